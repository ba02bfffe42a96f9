//! rask for people who compute.
//!
//! ```
//! rask::op! {
//!     /// Adds one.
//!     pub fn inc(x: i64) -> i64 { x + 1 }
//! }
//! rask::op! {
//!     pub fn add(x: i64, y: i64) -> i64 { x + y }
//! }
//!
//!
//! fn main() {
//!     let x = rask::delayed!(inc(1));
//!     let y = rask::delayed!(inc(2));
//!     let z = rask::delayed!(add(&x, &y)); // nothing has run yet
//!     assert_eq!(z.compute().unwrap(), 5);
//! }
//! ```
//!
//! `op!` must be used at module level (not inside a function body), because
//! it defines a module beside the function.
//!
//! Functions registered with [`op!`] run anywhere a binary linked with them
//! runs a worker. Closures ([`local`]) are for the local cluster only.
//! `compute` runs on the current [`Client`] — the last one created — or on
//! the scheduler `RASK_SCHEDULER_ADDRESS` / `DASK_SCHEDULER_ADDRESS` names,
//! or on a default [`LocalCluster`] started on first use, just as Dask does.

#[cfg(feature = "mimalloc")]
pub mod alloc;
mod client;
mod cluster;
mod delayed;
mod error;
mod future_state;
mod remote;
mod visualize;

pub use client::{Client, Future, Security, compute_all, scheduler_address_from_env};
pub use cluster::{LocalCluster, LocalClusterConfig, WorkerInfo};
pub use delayed::{ArgPart, ArgTuple, Delayed, IntoArg, LocalFn, LocalFunction, local, sum, task_count, visualize_all};
pub use error::{Error, Result};
pub use rask_proto::transport::TlsFiles;
pub use rask_scheduler::{ErrorKind, TaskError};
pub use visualize::Dot;

/// The data model, for ops and collections built on rask.
pub use rask_core as core;

/// Registers a function as a named op and makes it callable lazily.
///
/// The function stays an ordinary function. Beside it the macro defines a
/// module of the same name with `delayed(...)`, which builds a lazy call, and
/// `NAME`, the name the op is registered under in every binary that links it.
#[macro_export]
macro_rules! op {
    ($(#[$meta:meta])* $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret $body

        #[doc = concat!("Lazy calls of [`", stringify!($name), "`](fn@", stringify!($name), ").")]
        #[allow(non_snake_case, dead_code, unused_imports)]
        $vis mod $name {
            use super::*;

            /// The name this op is registered under.
            pub const NAME: &str = module_path!();

            #[doc(hidden)]
            pub fn __call(
                _params: &$crate::core::Params,
                args: ::std::vec::Vec<$crate::core::Value>,
            ) -> ::std::result::Result<$crate::core::Value, $crate::core::OpError> {
                let expected: usize = 0 $(+ { let _ = stringify!($arg); 1 })*;
                if args.len() != expected {
                    return Err($crate::core::OpError::new(format!(
                        "{} takes {} arguments, got {}", NAME, expected, args.len()
                    )));
                }
                let mut args = args.into_iter();
                $(
                    let $arg: $ty = $crate::core::FromValue::from_value(args.next().unwrap_or_default())
                        .map_err(|e| $crate::core::OpError::new(format!(
                            "argument `{}` of {}: {}", stringify!($arg), NAME, e
                        )))?;
                )*
                $crate::core::OpOutput::into_op_result(super::$name($($arg),*))
            }

            $crate::core::inventory::submit! {
                $crate::core::OpEntry { name: NAME, func: __call }
            }

            /// Builds a lazy call; arguments may be values or lazy values.
            pub fn delayed($($arg: impl $crate::IntoArg<$ty>),*)
                -> $crate::Delayed<<$ret as $crate::core::OpOutput>::Output>
            {
                $crate::Delayed::from_call(NAME, stringify!($name), vec![$($crate::IntoArg::<$ty>::into_arg($arg)),*])
            }
        }
    };
}

/// `delayed!(f(a, b))` is the lazy call of an op registered with [`op!`],
/// like Dask's `delayed(f)(a, b)`.
#[macro_export]
macro_rules! delayed {
    ($($seg:ident)::+ ( $($arg:expr),* $(,)? )) => {
        $($seg)::+::delayed($($arg),*)
    };
}

/// The names most programs need.
pub mod prelude {
    pub use crate::{Client, Delayed, Future, LocalCluster, compute_all, delayed, local, op};
}
