//! End-to-end tests of Sabt through its real binaries (`tests/tests/`), and `sabt-demo`, which
//! builds a single-process chain, anchors a document and writes its proof so that `sabt verify`
//! can check it. [`cluster`] runs real `sabt-node` processes for multi-node and fault tests;
//! [`netns`] puts them on separate hosts (network namespaces) whose links the tests cut.

pub mod cli;
pub mod cluster;
pub mod netns;
