//! Pieces shared by pages.

pub mod findings;
pub mod graph;
