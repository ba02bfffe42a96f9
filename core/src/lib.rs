//! rask's data model, shared by every other crate.
//!
//! A computation is a [`Graph`] of [`Task`]s. A task is data, not a closure:
//! a [`Key`] naming what it computes, an op name looked up in the
//! [`OpRegistry`], serialized parameters and argument templates that refer to
//! the keys of its inputs. Because tasks are data they can be validated,
//! optimised ([`optimize`]), shipped to another process and replayed from
//! lineage when a worker dies. Results are [`Value`]s, which know their size
//! in bytes so schedulers and workers can account for memory.

mod array_wire;
pub mod capability;
pub mod error;
pub mod graph;
pub mod key;
pub mod ops;
pub mod optimize;
pub mod table;
pub mod task;
pub mod value;

pub use capability::Capabilities;
pub use error::{Error, OpError, Result};
pub use graph::{Analysis, Graph};
pub use key::Key;
pub use ops::{LocalOp, OpEntry, OpFn, OpRegistry};
pub use table::TableValue;
pub use task::{Arg, Body, Call, Params, Task};
pub use value::{ArrayValue, DType, Element, FromValue, IntoValue, OpOutput, Value};

/// Re-exported so that the `op!` macro in the user-facing crate can register
/// functions without users naming `inventory` themselves.
#[doc(hidden)]
pub use inventory;
