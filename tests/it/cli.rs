//! kmsctl against a real daemon.
