//! The pure flow core: the document, step kinds, criteria logic, SMS length,
//! canvas geometry, the validator, the editor's changes and undo history,
//! and the step semantics (engine, calendars, merge tags) with the
//! simulator that drives them.
//!
//! Nothing here does IO, reads the clock or imports Leptos: it compiles for
//! the browser and the server alike and is tested as plain functions.

pub mod calendar;
pub mod charts;
pub mod contact;
pub mod editor;
pub mod engagement;
pub mod engine;
pub mod export;
pub mod flow;
pub mod geometry;
pub mod kinds;
pub mod limits;
pub mod logic;
pub mod matcher_text;
pub mod merge;
pub mod pressure;
pub mod simulate;
pub mod sms;
pub mod stats;
pub mod validate;

pub use flow::{DocumentError, Edge, FlowDocument, Step, FORMAT_V1};
pub use kinds::StepKind;
pub use validate::{validate, validate_value, Code, Context, Finding, Findings, Level};
