//! The reviewer dashboard served by `inloop serve`: server-rendered HTML (maud, escaped by
//! construction), a form generated from each task's response JSON Schema, and a small script
//! for live updates over server-sent events. No build step: assets are compiled in.

pub mod assets;
pub mod form;
pub mod pages;
pub mod payload;
pub mod view;
