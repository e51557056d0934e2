"""The NVMe controller core, sans-I/O: registers, queues, admin and I/O dispatch,
features, interrupts, the trace. It knows no namespace kind by name: kind.py
says what a kind provides, and each kind registers its own tables."""
