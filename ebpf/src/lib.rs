//! The kernel contract of diffkeeper-sidecar: the CO-RE eBPF object and its event ABI.
//!
//! * [`object`]: the compiled object (committed under `obj/`, checked against `c/`) and the names
//!   of its programs, maps and globals.
//! * [`check`]: static checks that an object only uses what Linux 4.18 offers (the compat one).
//! * [`comm`]: a task's command name, kept inline.
//! * [`event`]: the records the programs write and the map keys the loader fills, mirrored from
//!   `c/diffkeeper_event.h` and checked against it.

pub mod arch;
pub mod check;
pub mod comm;
pub mod event;
mod event_ref;
pub mod object;
