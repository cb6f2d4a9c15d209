//! Docker bring-up at startup: probe, plan, apply the plan's steps. The
//! decisions live in `plan`; this module only carries them out, in order,
//! and reports what happened with the time each phase took.

use std::path::Path;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::config::Settings;
use crate::plan::{self, DockerMode, Plan, PlannedStep, Step};
use crate::prepare::{self, RealSyscalls};
use crate::probe::{self, SystemProbe};
use crate::{tls, user};

pub const GROUP_FILE: &str = "/etc/group";
pub const GSHADOW_FILE: &str = "/etc/gshadow";
/// Bound on the cgroup v2 evacuation retries (EBUSY only): a `docker exec`
/// landing in the root cgroup is moved on the next try, within milliseconds.
pub const EVACUATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
/// Name given to a host socket's group when no group has its gid yet.
pub const HOST_SOCKET_GROUP: &str = "docker-host";

/// Why a step could not be carried out, typed by the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Prepare(#[from] prepare::PrepareError),
    #[error("{failed} of {total} cgroup hierarchies stay read-only: {first}")]
    CgroupV1ReadOnly {
        failed: usize,
        total: usize,
        first: prepare::PrepareError,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Groups(#[from] user::UserError),
    #[error(transparent)]
    Rootless(#[from] crate::rootless::prepare::RootlessPrepareError),
}

/// What startup decided and whether the inner daemon may be started.
pub struct Prepared {
    pub probe: SystemProbe,
    pub plan: Plan,
    /// False when a required step failed: dockerd is then not started.
    pub dockerd_allowed: bool,
}

/// Probe the real system, including the iptables command checks the plan
/// needs. The plan names the next check as data ([`plan::next_iptables_check`]);
/// this loop runs it and feeds the result back, so the checks run lazily, in
/// upstream's order (a check runs `iptables` under a backend, which may load
/// kernel modules: none runs that the decision does not need), and probe never
/// calls plan. It runs child processes and waits for them: call it before the
/// reaper starts.
pub fn probe_system(settings: &Settings) -> SystemProbe {
    let mut p = probe::probe_real(settings);
    while let Some(tool) = plan::next_iptables_check(&p, settings) {
        p.iptables.check(tool);
    }
    if plan::wants_iptables_legacy_version(&p, settings) {
        p.iptables.probe_legacy_version();
    }
    p
}

/// Probe and plan, logging the mode and every warning once.
pub fn probe_and_plan(settings: &Settings) -> (SystemProbe, Plan) {
    let t = Instant::now();
    let probe = probe_system(settings);
    for e in &probe.errors {
        warn!("probe: {e}");
    }
    let plan = plan::make_plan(&probe, settings);
    if let Some(d) = &plan.dockerd {
        // Resolved once here; every (re)start runs these same files.
        let show = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        };
        info!(
            dockerd = %d.program.display(),
            iptables = %show(&probe.iptables.iptables_path),
            iptables_legacy = %show(&probe.iptables.iptables_legacy_path),
            "programs run as root, from the root-only search path {}",
            probe.env.path
        );
    }
    info!(
        mode = plan.mode.name(),
        elapsed_ms = t.elapsed().as_millis() as u64,
        "docker mode decided"
    );
    match &plan.mode {
        DockerMode::Impossible {
            reasons,
            suggestions,
        } => {
            // The one clear message of design §1: why, and every way that would work.
            warn!(
                "Docker is enabled but cannot work in this container: {}. The workspace runs without Docker. Ways that work: {}",
                reasons.join("; "),
                suggestions.join(" | ")
            );
        }
        DockerMode::Remote { host, .. } => {
            info!("using the remote engine at {host}; no dockerd is started")
        }
        DockerMode::HostSocket {
            path,
            gid,
            read_only,
            ..
        } => info!(
            "using the host's engine through {} (gid {gid}{}); no dockerd is started",
            path.display(),
            if *read_only { ", read-only mount" } else { "" }
        ),
        _ => {}
    }
    for w in &plan.warnings {
        match &w.fix {
            Some(fix) => warn!("{} (fix: {fix})", w.message),
            None => warn!("{}", w.message),
        }
    }
    (probe, plan)
}

/// Applies every planned step. A failing optional step is a warning; a
/// failing required one is an error that keeps dockerd from starting but
/// never stops the workspace.
pub fn apply(probe: SystemProbe, plan: Plan) -> Prepared {
    let t = Instant::now();
    let mut dockerd_allowed = true;
    for planned in &plan.steps {
        let started = Instant::now();
        match apply_step(&planned.step) {
            Ok(done) => {
                tracing::debug!(
                    step = step_name(&planned.step),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "{done}"
                );
            }
            Err(e) => report_failure(planned, &e, &mut dockerd_allowed),
        }
    }
    info!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        steps = plan.steps.len(),
        "prepare done"
    );
    Prepared {
        probe,
        plan,
        dockerd_allowed,
    }
}

fn report_failure(planned: &PlannedStep, msg: &ApplyError, dockerd_allowed: &mut bool) {
    let name = step_name(&planned.step);
    if planned.optional {
        warn!(step = name, "{msg} (continuing: {})", planned.why);
    } else {
        error!(step = name, "{msg}");
    }
    if planned.blocks_dockerd {
        *dockerd_allowed = false;
    }
}

pub fn step_name(step: &Step) -> &'static str {
    match step {
        Step::RemoveStalePidFiles { .. } => "remove-stale-pid-files",
        Step::MountSecurityfs => "mount-securityfs",
        Step::RemountCgroup2Rw { .. } => "remount-cgroup2-rw",
        Step::CgroupV2Evacuate { .. } => "cgroup-v2-evacuate",
        Step::RemountCgroupV1Rw { .. } => "remount-cgroup-v1-rw",
        Step::MakeRootRshared => "make-root-rshared",
        Step::IptablesLegacyLinks { .. } => "iptables-legacy-links",
        Step::SetIptablesAlternatives { .. } => "set-iptables-alternatives",
        Step::GenerateTls { .. } => "generate-tls",
        Step::EnsureDockerGroup { .. } => "ensure-docker-group",
        Step::AddUserToSocketGroup { .. } => "add-user-to-socket-group",
        Step::Rootless { action } => action.name(),
    }
}

/// Carries out one step; `Ok` describes what was done.
fn apply_step(step: &Step) -> Result<String, ApplyError> {
    match step {
        Step::RemoveStalePidFiles { files } => {
            let removed = prepare::remove_pid_files(&RealSyscalls, files)?;
            Ok(format!("removed {removed:?}"))
        }
        Step::MountSecurityfs => prepare::mount_securityfs(
            &RealSyscalls,
            Path::new("/sys/kernel/security"),
            Path::new("/proc/self/mountinfo"),
        )
        .map(|o| format!("{o:?}"))
        .map_err(ApplyError::from),
        Step::RemountCgroup2Rw { mount_point } => prepare::remount_rw(&RealSyscalls, mount_point)
            .map(|changed| format!("remounted: {changed}"))
            .map_err(ApplyError::from),
        Step::CgroupV2Evacuate { root, init, .. } => {
            let name = init
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "init".into());
            let r = prepare::cgroup_v2_evacuate(&RealSyscalls, root, &name, EVACUATE_DEADLINE)?;
            info!(
                moved = r.pids_moved.len(),
                controllers = %r.controllers_enabled.join(" "),
                attempts = r.attempts,
                "cgroup v2: root evacuated into {}",
                r.init_cgroup.display()
            );
            Ok(format!("{r:?}"))
        }
        Step::RemountCgroupV1Rw { mount_points } => {
            let r = prepare::remount_cgroup_v1_rw(&RealSyscalls, mount_points);
            let failed = r.failed.len();
            if let Some(first) = r.failed.into_iter().next() {
                return Err(ApplyError::CgroupV1ReadOnly {
                    failed,
                    total: mount_points.len(),
                    first,
                });
            }
            Ok(format!("remounted read-write: {}", r.remounted.len()))
        }
        Step::MakeRootRshared => prepare::make_root_rshared(&RealSyscalls)
            .map(|()| "/ is rshared".to_string())
            .map_err(ApplyError::from),
        Step::IptablesLegacyLinks {
            dir,
            version,
            links,
        } => {
            prepare::iptables_legacy_links(dir, links)?;
            match version {
                Some(Ok(v)) => info!("iptables: {v}"),
                Some(Err(e)) => warn!("iptables --version failed: {e}"),
                None => {}
            }
            Ok(format!("links in {}", dir.display()))
        }
        Step::SetIptablesAlternatives { set } => {
            prepare::set_iptables_alternatives(set)?;
            Ok(format!("alternatives set: {set:?}"))
        }
        Step::GenerateTls {
            dir,
            extra_sans,
            hostname,
            ips,
        } => {
            let t = Instant::now();
            let req = tls::TlsRequest {
                dir: dir.clone(),
                hostname: hostname.clone(),
                ips: ips.clone(),
                extra_sans: extra_sans.clone(),
            };
            let outcome = tls::ensure_certificates(&req, time::OffsetDateTime::now_utc())?;
            info!(
                elapsed_ms = t.elapsed().as_millis() as u64,
                reused_keys = outcome.reused_keys,
                user_managed_ca = outcome.user_managed_ca,
                "TLS certificates ready in {}",
                dir.display()
            );
            Ok(format!("{outcome:?}"))
        }
        Step::EnsureDockerGroup { gid, member } => {
            let change =
                user::update_groups(Path::new(GROUP_FILE), Path::new(GSHADOW_FILE), |db| {
                    let change = db.ensure_group_gid("docker", *gid)?;
                    if let Some(name) = member {
                        db.ensure_member("docker", name)?;
                    }
                    Ok(change)
                })?;
            Ok(format!("group docker gid {gid}: {change:?}"))
        }
        Step::AddUserToSocketGroup { gid, member } => {
            let group =
                user::update_groups(Path::new(GROUP_FILE), Path::new(GSHADOW_FILE), |db| {
                    let group = db.ensure_group_for_gid(*gid, HOST_SOCKET_GROUP)?;
                    if let Some(name) = member {
                        db.ensure_member(&group, name)?;
                    }
                    Ok(group)
                })?;
            info!("the host socket's group {group} (gid {gid}) is given to the workspace user");
            Ok(format!("group {group}"))
        }
        Step::Rootless { action } => Ok(crate::rootless::prepare::apply(action)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_errors_keep_the_cause_of_the_layer_that_failed() {
        let first = prepare::PrepareError::IptablesVersion {
            binary: "/x/iptables".into(),
            detail: "gone".into(),
        };
        let e = ApplyError::CgroupV1ReadOnly {
            failed: 2,
            total: 9,
            first,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("2 of 9 cgroup hierarchies stay read-only: cannot run `/x/iptables --version`: gone"),
            "{msg}"
        );
        let e: ApplyError = prepare::PrepareError::IptablesVersion {
            binary: "/y".into(),
            detail: "d".into(),
        }
        .into();
        assert!(matches!(e, ApplyError::Prepare(_)));
    }
}
