"""ocssd_vfu: an Open-Channel SSD (OCSSD 2.0 / 1.2) emulated as a vfio-user PCIe device."""

__version__ = "0.1.0"
