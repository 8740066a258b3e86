//! Docker Swarm, which carries an environment's networks across hosts: each engine's
//! membership, and forming the swarm (`[env] swarm = "create"`) from engines that are in
//! none. hdev never takes an engine out of another swarm, and never leaves one: a swarm
//! outlives environments (other environments may use it).

use bollard::models::{LocalNodeState, SwarmInitRequest, SwarmJoinRequest};

use super::{map_err, DockerBackend};
use crate::backend::BackendError;

/// Swarm port managers listen on.
pub const SWARM_PORT: u16 = 2377;

/// What one engine says of its swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// `inactive`, `pending`, `active`, `error`, or empty.
    pub state: String,
    /// The swarm's id, when the engine is in one.
    pub cluster: Option<String>,
    /// The engine is a manager (it can create overlay networks).
    pub manager: bool,
    /// The address the node advertises (`10.99.0.11`).
    pub addr: Option<String>,
    /// Why the engine's swarm is in error, if it is.
    pub error: Option<String>,
}

impl Membership {
    pub fn active(&self) -> bool {
        self.state == "active"
    }
}

impl DockerBackend {
    /// The engine's swarm membership.
    pub async fn membership(&self) -> Result<Membership, BackendError> {
        let info =
            self.docker
                .info()
                .await
                .map_err(map_err("read the engine's info", "engine", ""))?;
        let s = info.swarm.unwrap_or_default();
        let state = match s.local_node_state {
            Some(LocalNodeState::ACTIVE) => "active",
            Some(LocalNodeState::PENDING) => "pending",
            Some(LocalNodeState::ERROR) => "error",
            Some(LocalNodeState::LOCKED) => "locked",
            _ => "inactive",
        };
        Ok(Membership {
            state: state.to_string(),
            cluster: s.cluster.and_then(|c| c.id).filter(|i| !i.is_empty()),
            manager: s.control_available.unwrap_or(false),
            addr: s.node_addr.filter(|a| !a.is_empty()),
            error: s.error.filter(|e| !e.is_empty()),
        })
    }

    /// Makes this engine the first manager of a new swarm, advertising `advertise` (the
    /// engine picks its address when `None`).
    pub async fn init_swarm(&self, advertise: Option<&str>) -> Result<(), BackendError> {
        let listen = match advertise {
            Some(a) => format!("{a}:{SWARM_PORT}"),
            None => format!("0.0.0.0:{SWARM_PORT}"),
        };
        let req = SwarmInitRequest {
            listen_addr: Some(listen),
            advertise_addr: advertise.map(str::to_string),
            ..Default::default()
        };
        self.docker
            .init_swarm(req)
            .await
            .map(|_| ())
            .map_err(map_err("create a swarm", "swarm", ""))
    }

    /// The token workers join this manager's swarm with.
    pub async fn worker_token(&self) -> Result<String, BackendError> {
        let s =
            self.docker
                .inspect_swarm()
                .await
                .map_err(map_err("read the swarm", "swarm", ""))?;
        s.join_tokens
            .and_then(|t| t.worker)
            .ok_or_else(|| BackendError::Engine {
                action: "read the swarm's join token".into(),
                message: "the engine gave none (is it a manager?)".into(),
            })
    }

    /// Joins this engine to the swarm of the manager at `manager` as a worker.
    pub async fn join_swarm(
        &self,
        manager: &str,
        token: &str,
        advertise: Option<&str>,
    ) -> Result<(), BackendError> {
        let listen = match advertise {
            Some(a) => format!("{a}:{SWARM_PORT}"),
            None => format!("0.0.0.0:{SWARM_PORT}"),
        };
        let req = SwarmJoinRequest {
            listen_addr: Some(listen),
            advertise_addr: advertise.map(str::to_string),
            remote_addrs: Some(vec![format!("{manager}:{SWARM_PORT}")]),
            join_token: Some(token.to_string()),
            ..Default::default()
        };
        self.docker.join_swarm(req).await.map_err(map_err(
            format!("join the swarm at {manager}"),
            "swarm",
            "",
        ))
    }
}

/// One engine that must be in the environment's swarm.
pub struct Member<'a> {
    /// Its host's name, for messages.
    pub host: String,
    /// The address it advertises (`[host.NAME] advertise`), if set.
    pub advertise: Option<String>,
    pub engine: &'a DockerBackend,
}

fn swarm_error(message: String) -> BackendError {
    BackendError::Engine {
        action: "bring the hosts into one swarm".into(),
        message,
    }
}

/// Brings `members` into one swarm, or checks that they are (`create` false); returns
/// the index of a member that manages it (where overlay networks are made).
pub async fn ensure(members: &[Member<'_>], create: bool) -> Result<usize, BackendError> {
    let looks = members.iter().map(|m| m.engine.membership());
    let mut seen = Vec::new();
    for r in futures_util::future::join_all(looks).await {
        seen.push(r?);
    }
    let clusters: std::collections::BTreeSet<&str> =
        seen.iter().filter_map(|s| s.cluster.as_deref()).collect();
    if clusters.len() > 1 {
        let list: Vec<String> = members
            .iter()
            .zip(&seen)
            .map(|(m, s)| format!("{} in {}", m.host, s.cluster.as_deref().unwrap_or("none")))
            .collect();
        return Err(swarm_error(format!(
            "the hosts are in different swarms ({}); hdev does not move an engine out of a swarm: leave one with `docker swarm leave`",
            list.join(", ")
        )));
    }
    if let Some((i, s)) = seen.iter().enumerate().find(|(_, s)| s.error.is_some()) {
        return Err(swarm_error(format!(
            "host {}: swarm error: {}",
            members[i].host,
            s.error.as_deref().unwrap_or_default()
        )));
    }
    let outside: Vec<usize> = (0..members.len()).filter(|&i| !seen[i].active()).collect();
    if !outside.is_empty() && !create {
        let names: Vec<&str> = outside.iter().map(|&i| members[i].host.as_str()).collect();
        return Err(swarm_error(format!(
            "networks across hosts need the hosts' Docker engines in one swarm, and {} {} not in one; join them (`docker swarm join`) or let hdev form the swarm with `swarm = \"create\"` under `[env]` or in the hosts file",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        )));
    }
    let manager = match seen.iter().position(|s| s.active() && s.manager) {
        Some(i) => i,
        None if clusters.is_empty() => {
            // No swarm yet: the first host starts one.
            let first = &members[0];
            first.engine.init_swarm(first.advertise.as_deref()).await?;
            seen[0] = first.engine.membership().await?;
            0
        }
        None => {
            return Err(swarm_error(
                "none of the environment's hosts manages their swarm, and overlay networks are made on a manager; place a machine on a manager host".into(),
            ))
        }
    };
    let addr = seen[manager].addr.clone().ok_or_else(|| {
        swarm_error(format!(
            "host {} gives no swarm address",
            members[manager].host
        ))
    })?;
    let pending: Vec<usize> = outside.into_iter().filter(|&i| i != manager).collect();
    if pending.is_empty() {
        return Ok(manager);
    }
    let token = members[manager].engine.worker_token().await?;
    for i in pending {
        let m = &members[i];
        m.engine
            .join_swarm(&addr, &token, m.advertise.as_deref())
            .await
            .map_err(|e| swarm_error(format!("host {}: {e}", m.host)))?;
    }
    Ok(manager)
}

/// `hdev doctor`'s lines for one host's Docker engine: reachable, and its swarm (with
/// the state of every node a manager sees, which tells whether the swarm ports pass).
pub async fn host_probes(
    host: &str,
    endpoint: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<crate::backend::Probe> {
    use crate::backend::Probe;
    let name = |what: &str| format!("{host} {what}");
    let d = match DockerBackend::connect_to(endpoint).await {
        Ok(d) => d,
        Err(e) => {
            return vec![Probe {
                name: name("docker"),
                ok: false,
                detail: e.to_string(),
            }]
        }
    };
    let version = d
        .docker
        .version()
        .await
        .map(|v| v.version.unwrap_or_default())
        .unwrap_or_default();
    let mut out = vec![Probe {
        name: name("docker"),
        ok: true,
        detail: format!(
            "engine {version} at {}{}",
            endpoint.unwrap_or("the local socket"),
            match labels.is_empty() {
                true => String::new(),
                false => {
                    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!(" (labels {})", l.join(", "))
                }
            }
        ),
    }];
    let swarm = match d.membership().await {
        Ok(m) if m.active() => {
            let role = if m.manager { "manager" } else { "worker" };
            // Only managers know the swarm's id.
            let cluster = match m.cluster.as_deref() {
                Some(c) => format!(" of swarm {}", &c[..c.len().min(12)]),
                None => String::new(),
            };
            let mut detail = format!("{role}{cluster} at {}", m.addr.as_deref().unwrap_or("?"));
            let mut ok = true;
            if m.manager {
                match d.docker.list_nodes(None).await {
                    Ok(nodes) => {
                        let down: Vec<String> = nodes
                            .iter()
                            .filter(|n| {
                                n.status.as_ref().and_then(|s| s.state)
                                    != Some(bollard::models::NodeState::READY)
                            })
                            .map(|n| {
                                n.status
                                    .as_ref()
                                    .and_then(|s| s.addr.clone())
                                    .unwrap_or_else(|| n.id.clone().unwrap_or_default())
                            })
                            .collect();
                        detail.push_str(&format!(", {} node(s)", nodes.len()));
                        if !down.is_empty() {
                            ok = false;
                            detail.push_str(&format!(
                                "; not ready: {} (the hosts must reach each other on 2377/tcp, 7946/tcp+udp and 4789/udp)",
                                down.join(", ")
                            ));
                        }
                    }
                    Err(e) => detail.push_str(&format!("; cannot list nodes: {e}")),
                }
            }
            Probe {
                name: name("swarm"),
                ok,
                detail,
            }
        }
        Ok(m) => Probe {
            name: name("swarm"),
            ok: m.error.is_none(),
            detail: match m.error {
                Some(e) => format!("{}: {e}", m.state),
                None => format!(
                    "not in a swarm ({}); networks across hosts need one: hdev forms it with `swarm = \"create\"`",
                    m.state
                ),
            },
        },
        Err(e) => Probe {
            name: name("swarm"),
            ok: false,
            detail: e.to_string(),
        },
    };
    out.push(swarm);
    out
}
