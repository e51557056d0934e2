"""Get and Set Features: one table maps each feature identifier to how its value is
read and set (an identifier missing from it is Invalid Field).

Current values live in ctrl.features; a fresh Features() holds the defaults,
which are also the saved values (no feature is saveable: Set Features with Save
is Feature Identifier Not Saveable). Get Features' SEL picks current, default,
saved or the capabilities. Keep Alive Timer (0Fh) is not offered: KAS is 0, as
Keep Alive exists for fabrics and a PCIe function's host going away is seen on
the vfio-user socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ocssd_vfu.nvme import interrupts
from ocssd_vfu.nvme.command import OK, Command, Result, fail_no_retry
from ocssd_vfu.nvme.feature_values import Features
from ocssd_vfu.nvme.state import ControllerState
from ocssd_vfu.spec.bitfields import Bitfields, fields_mask
from ocssd_vfu.spec.commands import (
    ArbitrationValue,
    AsyncEventConfigurationValue,
    ErrorRecoveryValue,
    FeaturesCdw10,
    NumberOfQueuesValue,
    PowerManagementValue,
    TemperatureThresholdValue,
    VolatileWriteCacheValue,
)
from ocssd_vfu.spec.nvme import FeatureId
from ocssd_vfu.spec.status import Status

NUMBER_OF_POWER_STATES = 1        # NPSS + 1
WORKLOAD_HINTS = 3                # Power Management WH: none, extended idle, heavy sequential
TMPSEL_COMPOSITE, TMPSEL_ALL = 0x0, 0xF
THSEL_OVER, THSEL_UNDER = 0, 1
SEL_CURRENT, SEL_DEFAULT, SEL_SAVED, SEL_CAPABILITIES = range(4)
CAPABILITY_NAMESPACE_SPECIFIC, CAPABILITY_CHANGEABLE = 1 << 1, 1 << 2


Getter = Callable[["ControllerState", Features, int], "int | None"]
Setter = Callable[["ControllerState", int], Result]


class Feature(NamedTuple):
    """get: the value CDW11 selects from a Features; set: a Set Features."""

    get: Getter
    set: Setter
    namespace_specific: bool = False


def _field(name: str) -> Getter:
    """The get of a feature that is one field of Features."""
    return lambda ctrl, values, cdw11: int(getattr(values, name))


def _set_field(name: str, layout: Bitfields) -> Setter:
    """The set of a feature that is one field of Features: CDW11's bits of `layout`'s
    fields (reserved ones cleared)."""
    mask = fields_mask(layout)

    def set_field(ctrl: ControllerState, cdw11: int) -> Result:
        setattr(ctrl.features, name, cdw11 & mask)
        return OK
    return set_field


def _temperature_field(cdw11: int, setting: bool) -> str | None:
    """The Features field TMPSEL/THSEL select: only the composite temperature exists
    (TMPSEL Fh, all sensors, is that one too, for Set Features)."""
    value = TemperatureThresholdValue.parse(cdw11)
    tmpsel, thsel = value.tmpsel, value.thsel
    if tmpsel != TMPSEL_COMPOSITE and not (setting and tmpsel == TMPSEL_ALL):
        return None
    return {THSEL_OVER: "temperature_over", THSEL_UNDER: "temperature_under"}.get(thsel)


def get_temperature_threshold(ctrl: ControllerState, values: Features, cdw11: int) -> int | None:
    name = _temperature_field(cdw11, setting=False)
    return None if name is None else int(getattr(values, name))


def set_temperature_threshold(ctrl: ControllerState, cdw11: int) -> Result:
    name = _temperature_field(cdw11, setting=True)
    if name is None:
        return fail_no_retry(Status.INVALID_FIELD)
    setattr(ctrl.features, name, TemperatureThresholdValue.get(cdw11, "tmpth"))
    return OK


def set_power_management(ctrl: ControllerState, cdw11: int) -> Result:
    value = PowerManagementValue.parse(cdw11)
    if value.ps >= NUMBER_OF_POWER_STATES or value.wh >= WORKLOAD_HINTS:
        return fail_no_retry(Status.INVALID_FIELD)
    ctrl.features.power_management = cdw11 & fields_mask(PowerManagementValue)
    return OK


def set_error_recovery(ctrl: ControllerState, cdw11: int) -> Result:
    dulbe_capable = any(ns.supports_dulbe for ns in ctrl.namespaces.values())
    if ErrorRecoveryValue.get(cdw11, "dulbe") and not dulbe_capable:  # needs NSFEAT bit 2
        return fail_no_retry(Status.INVALID_FIELD)
    ctrl.features.error_recovery = cdw11 & fields_mask(ErrorRecoveryValue)
    return OK


def _queue_limit(ctrl: ControllerState) -> int:
    limit = ctrl.config.io_queue_pairs - 1
    return limit | limit << 16


def set_number_of_queues(ctrl: ControllerState, cdw11: int) -> Result:
    if ctrl.io_queues_created:  # NVMe 1.4 5.21.1.7: only before the first I/O queue
        return fail_no_retry(Status.COMMAND_SEQUENCE_ERROR)
    value = NumberOfQueuesValue.parse(cdw11)
    nsqr, ncqr = value.nsqr, value.ncqr
    if nsqr == 0xFFFF or ncqr == 0xFFFF:
        return fail_no_retry(Status.INVALID_FIELD)
    limit = ctrl.config.io_queue_pairs - 1
    return (Status.SUCCESS, min(nsqr, limit) | min(ncqr, limit) << 16)


# Interrupt Coalescing and Vector Configuration live with the coalescing state
# (interrupts.py); their defaults are 0: no coalescing, Coalescing Disable clear.
def _current(ctrl: ControllerState, values: Features) -> bool:
    return values is ctrl.features


def get_interrupt_coalescing(ctrl: ControllerState, values: Features, cdw11: int) -> int | None:
    return ctrl.coalescing.setting if _current(ctrl, values) else 0


def set_interrupt_coalescing(ctrl: ControllerState, cdw11: int) -> Result:
    return ctrl.coalescing.set_feature(FeatureId.INTERRUPT_COALESCING, cdw11)


def get_vector_configuration(ctrl: ControllerState, values: Features, cdw11: int) -> int | None:
    status, value = ctrl.coalescing.get_feature(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, cdw11)
    if status:
        return None
    return value if _current(ctrl, values) else value & ~interrupts.CD


def set_vector_configuration(ctrl: ControllerState, cdw11: int) -> Result:
    return ctrl.coalescing.set_feature(FeatureId.INTERRUPT_VECTOR_CONFIGURATION, cdw11)


FEATURES: dict[int, Feature] = {
    FeatureId.ARBITRATION: Feature(_field("arbitration"),
                                   _set_field("arbitration", ArbitrationValue)),
    FeatureId.POWER_MANAGEMENT: Feature(_field("power_management"), set_power_management),
    FeatureId.TEMPERATURE_THRESHOLD: Feature(get_temperature_threshold,
                                             set_temperature_threshold),
    # One value for every namespace of the controller.
    FeatureId.ERROR_RECOVERY: Feature(_field("error_recovery"), set_error_recovery,
                                      namespace_specific=True),
    FeatureId.VOLATILE_WRITE_CACHE: Feature(
        _field("volatile_write_cache"),
        _set_field("volatile_write_cache", VolatileWriteCacheValue)),
    FeatureId.NUMBER_OF_QUEUES: Feature(lambda ctrl, values, cdw11: _queue_limit(ctrl),
                                        set_number_of_queues),
    FeatureId.ASYNC_EVENT_CONFIGURATION: Feature(_field("async_event_config"),
                                                 _set_field("async_event_config",
                                                            AsyncEventConfigurationValue)),
    FeatureId.INTERRUPT_COALESCING: Feature(get_interrupt_coalescing, set_interrupt_coalescing),
    FeatureId.INTERRUPT_VECTOR_CONFIGURATION: Feature(get_vector_configuration,
                                                      set_vector_configuration),
}


def set_features(ctrl: ControllerState, cmd: Command) -> Result:
    fields = FeaturesCdw10.parse(cmd.cdw10)
    feature = FEATURES.get(fields.fid)
    if feature is None:
        return fail_no_retry(Status.INVALID_FIELD)
    if fields.sv:
        return fail_no_retry(Status.FEATURE_NOT_SAVEABLE)
    return feature.set(ctrl, cmd.cdw11)


def get_features(ctrl: ControllerState, cmd: Command) -> Result:
    fields = FeaturesCdw10.parse(cmd.cdw10)
    feature, select = FEATURES.get(fields.fid), fields.sel
    if feature is None or select > SEL_CAPABILITIES:
        return fail_no_retry(Status.INVALID_FIELD)
    if select == SEL_CAPABILITIES:
        return (Status.SUCCESS, CAPABILITY_CHANGEABLE
                | (CAPABILITY_NAMESPACE_SPECIFIC if feature.namespace_specific else 0))
    value = feature.get(ctrl, ctrl.features if select == SEL_CURRENT else Features(), cmd.cdw11)
    if value is None:
        return fail_no_retry(Status.INVALID_FIELD)
    return (Status.SUCCESS, value)
