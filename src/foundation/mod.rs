//! Layer 4, foundations: what the services stand on, with no knowledge of
//! them. The store (`store`), the shared daemon context (`shared`), the
//! protocol cores (`dhcp` decisions, its in-memory `lease_table` and
//! `firmware` classification, `tftp`'s wire format, `ipmi` RMCP+, `redfish`
//! (BMC URLs, the Redfish client), `templates`, `inventory` parsers, deploy
//! `callbacks`, the `ssh` client), the boot-failure rules (`diagnosis`), serial console
//! text (`console_text`), the intake's join rule (`intake`), the BMNode state table (`states`), the
//! catalogues (`errors`: ret codes; `usermsg`: user messages), and plain
//! helpers (`config`, `validate`, `ids`, `auth`, `budget`: connection and
//! descriptor budgets of the listeners), and the daemon's Prometheus `metrics`.

pub mod auth;
pub mod budget;
pub mod callbacks;
pub mod config;
pub mod console_text;
pub mod dhcp;
pub mod diagnosis;
pub mod errors;
pub mod firmware;
pub mod hints;
pub mod ids;
pub mod intake;
pub mod inventory;
pub mod ipmi;
pub mod lease_table;
pub mod metrics;
pub mod redfish;
pub mod shared;
pub mod ssh;
pub mod states;
pub mod store;
pub mod templates;
pub mod tftp;
pub mod usermsg;
pub mod validate;
