//! Layer 3, services: the things that do work and own their state machines.
//! `app` owns one of each for the daemon; `jobs` runs asynchronous job work;
//! `power` (BMC operations, power actions and power sync), `provision`
//! (provisioning, inspection and what a network-booting node gets), `scan`
//! (BMC discovery), `collect` (Node inventory over SSH), `images` (the image
//! cache: download, check, convert) and `ramdisk` (the deploy ramdisk
//! build), `console` (nodes' serial consoles over IPMI SOL: capture and
//! interactive sessions), `health` (the health report, the metrics' gauges, systemd's
//! status line). Services use each other and the foundations,
//! never a transport or the entry layer.

pub mod app;
pub mod collect;
pub mod console;
pub mod health;
pub mod images;
pub mod jobs;
pub mod logins;
pub mod power;
pub mod provision;
pub mod ramdisk;
pub mod scan;
