"""The I/O shell: libvfio-user binding, PCI function, DMA map, trio run loop."""
