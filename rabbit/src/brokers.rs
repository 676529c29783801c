/// The broker a service connects to: one AMQP URL, or the nodes of a cluster as a comma-separated
/// list of them (a comma inside one, e.g. in a password, must be written `%2C`).
///
/// Connecting tries the nodes in turn: at start from the first, so every instance prefers the
/// same node; after a lost connection from the node after the one that was lost, so a node that
/// went down is tried last.
#[derive(Debug, Clone)]
pub(crate) struct Brokers {
    urls: Vec<String>,
}

impl Brokers {
    pub fn parse(list: &str) -> Self {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            // Connecting to it fails with lapin's own message, as for any other bad URL.
            return Self {
                urls: vec![list.to_owned()],
            };
        }
        Self { urls }
    }

    /// Every node once, with its index, starting from the one at `first`.
    pub fn from(&self, first: usize) -> impl Iterator<Item = (usize, &str)> {
        let count = self.urls.len();
        (0..count).map(move |step| {
            let index = (first + step) % count;
            (index, self.urls[index].as_str())
        })
    }

    /// Where to start after losing the connection to the node at `index`: the next one.
    pub fn after(&self, index: usize) -> usize {
        (index + 1) % self.urls.len()
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }
}

/// The `host:port` of an AMQP URL, for the logs: without its credentials or its vhost.
pub(crate) fn node(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_a_list_of_one() {
        let brokers = Brokers::parse("amqp://guest:guest@localhost:5672/%2f");
        let tried: Vec<_> = brokers.from(0).collect();
        assert_eq!(tried, [(0, "amqp://guest:guest@localhost:5672/%2f")]);
        assert_eq!(brokers.after(0), 0);
    }

    #[test]
    fn a_list_is_tried_in_turn_from_any_node() {
        let brokers = Brokers::parse(" amqp://a:5672/%2f, amqp://b:5672/%2f,,amqp://c:5672/%2f ");
        assert_eq!(brokers.len(), 3);
        let tried: Vec<_> = brokers.from(brokers.after(0)).map(|(i, _)| i).collect();
        assert_eq!(tried, [1, 2, 0]);
        let tried: Vec<_> = brokers
            .from(brokers.after(2))
            .map(|(_, url)| node(url))
            .collect();
        assert_eq!(tried, ["a:5672", "b:5672", "c:5672"]);
    }

    #[test]
    fn a_node_is_named_without_credentials_or_vhost() {
        assert_eq!(
            node("amqp://guest:s3cr@t@rabbit-2:5672/%2f?heartbeat=10"),
            "rabbit-2:5672"
        );
        assert_eq!(node("amqps://broker.example"), "broker.example");
        assert_eq!(node("amqp://10.0.0.1:5673"), "10.0.0.1:5673");
    }
}
