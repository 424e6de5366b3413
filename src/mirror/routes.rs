//! From what a client asked for to a provider at an upstream: private namespaces
//! (`[namespaces.NS]`, the registry protocol) and network-mirror origins
//! (`[mirrors."HOST/NS"]`). The one place that decides which upstream serves a request.

use std::collections::BTreeMap;

use super::{Mirror, MirrorError};
use crate::protocol::{Hostname, Namespace, ProviderKey, ProviderType, UpstreamName};

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

#[derive(Debug, Default)]
pub(super) struct Routes {
    pub namespaces: BTreeMap<Namespace, UpstreamName>,
    pub origins: BTreeMap<(Hostname, Namespace), UpstreamName>,
}

impl Routes {
    fn upstream(&self, via: Via<'_>) -> Result<&UpstreamName, MirrorError> {
        match via {
            Via::Namespace(namespace) => self
                .namespaces
                .get(namespace)
                .ok_or_else(|| MirrorError::UnknownNamespace(namespace.clone())),
            Via::Origin(hostname, namespace) => self
                .origins
                .get(&(hostname.clone(), namespace.clone()))
                .ok_or_else(|| MirrorError::UnknownOrigin {
                    hostname: hostname.clone(),
                    namespace: namespace.clone(),
                }),
        }
    }

    /// `(namespace, upstream)` and `(HOST/NS, upstream)` pairs, for people.
    pub fn describe(&self) -> RouteTable {
        RouteTable {
            namespaces: self
                .namespaces
                .iter()
                .map(|(ns, upstream)| (ns.to_string(), upstream.to_string()))
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
    pub fn provider(
        &self,
        via: Via<'_>,
        provider: &ProviderType,
    ) -> Result<ProviderKey, MirrorError> {
        let upstream = self.inner.routes.upstream(via)?;
        let namespace = self
            .source(upstream)?
            .upstream
            .has_namespaces()
            .then(|| via.namespace().clone());
        Ok(ProviderKey::new(
            upstream.clone(),
            namespace,
            provider.clone(),
        ))
    }
}
