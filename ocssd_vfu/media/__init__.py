"""Storage: image files (mmap'd), their formats, volatile mode."""
