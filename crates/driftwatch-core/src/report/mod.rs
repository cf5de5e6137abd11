//! The daily report as plain data ([`model`]) and its renderers ([`text`],
//! [`html`]). Pure: `driftwatch::report::build` reads the store into a
//! [`model::Report`], these turn it into text.

pub mod html;
pub mod model;
pub mod text;
