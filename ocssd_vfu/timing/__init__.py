"""The flash timing model (sans-I/O) and the completion scheduler that posts at its times.

`parameters` holds what the model is told (tRD/tPROG/tBERS, channel bandwidth, write
buffer, layout); `model` turns media operations into completion times from a `now` the
caller passes; `scheduler` wakes the trio loop at those times through a timerfd.
docs/timing-model.md describes the model, docs/timing-integration.md how it is wired in.
"""
