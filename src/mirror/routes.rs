//! From what a client asked for to a provider at an upstream: private namespaces
//! (`[namespaces.NS]`, the registry protocol) and network-mirror origins
//! (`[mirrors."HOST/NS"]`). The one place that decides which upstream serves a request.

use std::collections::BTreeMap;

use super::{Mirror, MirrorError};
use crate::{
    config::Config,
    protocol::{
        Hostname, Namespace, NamespacePattern, ProviderKey, ProviderPattern, ProviderType,
        UpstreamName,
    },
};

/// How a request names its provider's upstream.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// A private namespace of the registry protocol: `HOST/NS/TYPE` in a source address.
    Namespace(&'a Namespace),
    /// A network-mirror origin: the provider's own `HOST/NS`.
    Origin(&'a Hostname, &'a Namespace),
}

impl Via<'_> {
    /// The namespace as the client wrote it.
    pub fn namespace(&self) -> &Namespace {
        match self {
            Via::Namespace(ns) | Via::Origin(_, ns) => ns,
        }
    }
}

/// The routes as people read them: `(namespace, upstream)` and `(HOST/NS, upstream)`.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub namespaces: Vec<(String, String)>,
    pub origins: Vec<(String, String)>,
}

/// Where one private namespace or origin leads.
#[derive(Debug, Clone)]
struct Route {
    upstream: UpstreamName,
    /// The namespace at the upstream, when it is not the one the client wrote.
    upstream_namespace: Option<Namespace>,
}

#[derive(Debug, Default)]
pub(super) struct Routes {
    /// Exact namespaces first (`NamespacePattern` orders `*` last).
    namespaces: BTreeMap<NamespacePattern, Route>,
    origins: BTreeMap<(Hostname, NamespacePattern), UpstreamName>,
    policy: Policy,
}

#[derive(Debug, Default)]
struct Policy {
    allow: Vec<ProviderPattern>,
    deny: Vec<ProviderPattern>,
}

impl Routes {
    pub fn from_config(config: &Config) -> Self {
        Self {
            namespaces: config
                .namespaces
                .iter()
                .map(|(pattern, ns)| {
                    let route = Route {
                        upstream: ns.upstream.clone(),
                        upstream_namespace: ns.upstream_namespace.clone(),
                    };
                    (pattern.clone(), route)
                })
                .collect(),
            origins: config
                .mirrors
                .iter()
                .map(|(origin, mirror)| {
                    let key = (origin.hostname.clone(), origin.namespace.clone());
                    (key, mirror.upstream.clone())
                })
                .collect(),
            policy: Policy {
                allow: config.policy.allow.clone(),
                deny: config.policy.deny.clone(),
            },
        }
    }

    /// The route of a request: an exact entry, else the `*` one.
    fn route(&self, via: Via<'_>) -> Result<Route, MirrorError> {
        match via {
            Via::Namespace(namespace) => {
                let exact = NamespacePattern::Exact(namespace.clone());
                self.namespaces
                    .get(&exact)
                    .or_else(|| self.namespaces.get(&NamespacePattern::Any))
                    .cloned()
                    .ok_or_else(|| MirrorError::UnknownNamespace(namespace.clone()))
            }
            Via::Origin(hostname, namespace) => {
                let exact = (hostname.clone(), NamespacePattern::Exact(namespace.clone()));
                let any = (hostname.clone(), NamespacePattern::Any);
                self.origins
                    .get(&exact)
                    .or_else(|| self.origins.get(&any))
                    .map(|upstream| Route {
                        upstream: upstream.clone(),
                        upstream_namespace: None,
                    })
                    .ok_or_else(|| MirrorError::UnknownOrigin {
                        hostname: hostname.clone(),
                        namespace: namespace.clone(),
                    })
            }
        }
    }

    /// Refuses a provider outside `allow` or inside `deny`, naming the rule.
    fn check_policy(
        &self,
        namespace: &Namespace,
        provider: &ProviderType,
    ) -> Result<(), MirrorError> {
        let denied = |rule: String| MirrorError::Denied {
            provider: format!("{namespace}/{provider}"),
            rule,
        };
        if let Some(rule) = self
            .policy
            .deny
            .iter()
            .find(|p| p.matches(namespace, provider))
        {
            return Err(denied(format!(
                "policy.deny {rule:?}",
                rule = rule.to_string()
            )));
        }
        if !self
            .policy
            .allow
            .iter()
            .any(|p| p.matches(namespace, provider))
        {
            return Err(denied("no policy.allow pattern matches it".to_owned()));
        }
        Ok(())
    }

    /// `(namespace, upstream)` and `(HOST/NS, upstream)` pairs, for people.
    pub fn describe(&self) -> RouteTable {
        RouteTable {
            namespaces: self
                .namespaces
                .iter()
                .map(|(ns, route)| match &route.upstream_namespace {
                    Some(at) => (ns.to_string(), format!("{} ({at})", route.upstream)),
                    None => (ns.to_string(), route.upstream.to_string()),
                })
                .collect(),
            origins: self
                .origins
                .iter()
                .map(|((host, ns), upstream)| (format!("{host}/{ns}"), upstream.to_string()))
                .collect(),
        }
    }
}

impl Mirror {
    /// The provider a request means. An upstream with namespaces gets the client's namespace;
    /// a releases site has none.
    /// The provider a request means, if the policy lets it be served. An upstream with
    /// namespaces gets the configured `upstream_namespace` or the client's namespace; a
    /// releases site has none.
    pub fn provider(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
    ) -> Result<ProviderKey, MirrorError> {
        let routes = &self.inner.routes;
        let route = routes.route(via)?;
        let namespace = route
            .upstream_namespace
            .unwrap_or_else(|| via.namespace().clone());
        routes.check_policy(&namespace, provider)?;
        let namespaced = self.source(&route.upstream)?.upstream.has_namespaces();
        Ok(ProviderKey::new(
            route.upstream,
            namespaced.then_some(namespace),
            provider.clone(),
        ))
    }
}
