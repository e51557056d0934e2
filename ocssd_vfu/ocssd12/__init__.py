"""Open-Channel SSD 1.2: geometry and PPAs, the block table, bad blocks, the commands."""
