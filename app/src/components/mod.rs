//! Pieces shared by pages.

pub mod findings;
pub mod graph;
pub mod test_run;
