//! Walks one packet through the hooks in kernel order and records every rule it meets.
