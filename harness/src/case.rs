//! Case directories (`case.json` + stream or traces) and the QMIGTRC1 trace container.
