//! Process hardening at start-up, so key material does not leave the process through the OS: no core dumps, no
//! ptrace by other processes of the same user, and memory locked against swap where the limits allow it.

/// What was done, and what could not be and why, for the log.
#[derive(Debug, Default)]
pub struct Hardening {
    pub done: Vec<&'static str>,
    pub not_done: Vec<String>,
}

#[cfg(target_os = "linux")]
pub fn harden() -> Hardening {
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{
        DumpableBehavior, Resource, Rlimit, getrlimit, set_dumpable_behavior, setrlimit,
    };

    let mut h = Hardening::default();
    match setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        Ok(()) => h.done.push("core dumps disabled (RLIMIT_CORE=0)"),
        Err(e) => h.not_done.push(format!("core dumps not disabled: {e}")),
    }
    match set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        Ok(()) => h
            .done
            .push("process not dumpable or traceable (PR_SET_DUMPABLE=0)"),
        Err(e) => h.not_done.push(format!("process still dumpable: {e}")),
    }
    // Locking future mappings under a finite limit would make allocations fail once it is reached, so memory is
    // locked only when the limit is unlimited (systemd: LimitMEMLOCK=infinity).
    let limit = getrlimit(Resource::Memlock);
    if limit.current.is_none() {
        match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
            Ok(()) => h.done.push("memory locked against swap (mlockall)"),
            Err(e) => h.not_done.push(format!(
                "memory not locked against swap: mlockall failed: {e}"
            )),
        }
    } else {
        h.not_done.push(format!(
            "memory not locked against swap: RLIMIT_MEMLOCK is {} bytes, too small for the whole daemon; \
             raise it to unlimited (systemd LimitMEMLOCK=infinity) or disable swap",
            limit.current.unwrap_or(0)
        ));
    }
    h
}

#[cfg(not(target_os = "linux"))]
pub fn harden() -> Hardening {
    Hardening {
        done: Vec::new(),
        not_done: vec!["process hardening is implemented for Linux only".to_owned()],
    }
}
