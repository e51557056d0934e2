# ocssd_vfu: the two commands a user needs are `make demo` and `make test`;
# both provision everything first (cached outside the checkout).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test unit e2e bench hostbench timingbench ftlbench pollbench latency profile \
        lint fuzz soak clean clean-cache

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip

setup: $(PY)
	$(PY) -m ocssd_vfu.guest.provision

demo: setup
	$(PY) -m ocssd_vfu demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# The long campaigns (issue 7): both fuzzers (the controller one and the vanishing-memory
# one, tests/fuzz/campaign.py), then SIGKILLs and reboots in guests (make soak).
FUZZ_SECONDS ?= 600
fuzz: setup
	$(PY) -m tests.fuzz.campaign --seconds $(FUZZ_SECONDS)

soak: setup
	OCSSD_VFU_SOAK=1 $(PY) -m pytest -s tests/e2e/test_crash_consistency.py \
	    tests/e2e/test_lifecycle.py $(PYTEST_ARGS)

# Host-side (no QEMU) figures first, then the guest's fio tables; results in bench/results/.
bench: setup
	$(PY) -m ocssd_vfu.hostbench
	$(PY) -m ocssd_vfu.bench
	$(PY) -m ocssd_vfu.ftlbench
	$(PY) -m ocssd_vfu.ftlbench --timing

# serve --poll against the default mode in one guest boot (~3 min): bench/results/poll/.
pollbench: setup
	$(PY) -m ocssd_vfu.pollbench $(POLLBENCH_ARGS)

hostbench: setup
	$(PY) -m ocssd_vfu.hostbench

# The flash timing model against completions on the real clock (no QEMU): the matrix of
# issue 15, modelled vs measured latency and throughput. TIMINGBENCH_ARGS="--lead-us 80".
TIMINGBENCH_ARGS ?=
timingbench: setup
	$(PY) -m ocssd_vfu.timingbench $(TIMINGBENCH_ARGS)

# The FTL's sustained 4K random write over 3x its capacity in the timing model's time (no
# QEMU, ~10 s): bench/results/ftl-timing-throughput.png with GC's start marked, and the WAF.
ftlbench: setup
	$(PY) -m ocssd_vfu.ftlbench --timing

# The guest-side QD1 latency breakdown (one boot, ~2 min): fio clat on null_blk, QEMU's
# NVMe and ocssd_vfu, the server's share from its JSON trace, QEMU's system calls.
latency: setup
	$(PY) -m ocssd_vfu.latencybench

# Where the server's time goes per command (py-spy samples the host-side bench at QD32).
profile: setup
	$(PY) -m ocssd_vfu.hostbench --profile --depths 32

lint: setup
	$(PY) -m ruff check ocssd_vfu tests native
	$(PY) -m mypy ocssd_vfu

# The checkout's own build products; the provisioned cache stays.
clean:
	rm -rf $(VENV) build *.egg-info ocssd_vfu/vfu/_libvfio_user*.so ocssd_vfu/vfu/_libvfio_user.c \
	       ocssd_vfu/dma/_native*.so ocssd_vfu/dma/_native.c \
	       .pytest_cache .mypy_cache .ruff_cache bench/results
	find . -name __pycache__ -prune -exec rm -rf {} +

# Everything `make setup` provisioned (QEMU root, libvfio-user, kernel, initramfs, apt cache).
clean-cache:
	rm -rf "$$($(PYTHON) -m ocssd_vfu.guest.provision --print cache)"
