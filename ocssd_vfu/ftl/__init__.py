"""A device-side FTL (page-level map, GC, crash-safe persistence) over chunked flash.

Public API: Ftl, FtlOptions, GcPolicy (ocssd_vfu.ftl.core, .gc); the Flash interface
and FlashLayout (ocssd_vfu.ftl.flash); MemoryFlash for tests; stats.collect and
stats.log_page for figures. docs/ftl.md describes the design.
"""
