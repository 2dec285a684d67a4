//! report: turns analysis results into what people read and scripts parse. Renderers
//! live one per file; nothing here analyses anything.

#[cfg(feature = "frames")]
pub mod frame;
pub mod json;
pub mod markdown;
pub mod table;
pub mod text;
pub mod time;
