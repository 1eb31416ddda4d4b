//! The console's pages, each a pure function from what it shows to HTML; the handlers in
//! `console::handlers` fetch and check, then call these.

pub mod audit;
pub mod denied;
pub mod dispatch;
pub mod home;
pub mod login;
pub mod scope;
pub mod sos_summary;
pub mod staff_list;
