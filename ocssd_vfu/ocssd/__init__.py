"""Open-Channel SSD 2.0: geometry, chunks, the image and the vector commands."""
