//! Infrastructure below every stage: what several stages use and none owns. Nothing here
//! imports a stage (metadata, build, verify, layers, image, outputs, render).

pub mod atomic;
pub mod ca;
pub mod digest;
pub mod fs;
pub mod lease;
pub mod process;
pub mod reference;
pub mod shell;
