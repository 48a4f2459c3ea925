//! Pieces shared by pages.

pub mod conversations;
pub mod editor;
pub mod findings;
pub mod rich_text;
pub mod test_run;
