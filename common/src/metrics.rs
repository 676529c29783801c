//! Prometheus metrics: the process's recorder, `GET /metrics` in Prometheus's text format, and
//! the HTTP metrics every service records alike. Code anywhere records through the `metrics`
//! facade (`metrics::counter!`); this module renders what was recorded.
//!
//! Labels stay bounded: an HTTP request is labelled with the route template of the service's
//! OpenAPI document that its path matches (`/articles/{id}`), never with the raw path; a path no
//! template matches is `unmatched`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use crate::openapi::Document;

/// Bucket bounds (seconds) of every `*_seconds` histogram: from a memory read to a slow store.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histograms are compacted; the recorder expects it from its owner.
const UPKEEP: Duration = Duration::from_secs(5);

/// The recorder of this process, installed on first use. Every service of a process (tests run
/// several) records into it; a scrape sees them all.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            })
            .expect("a thread for metrics upkeep");
        handle
    })
}

/// `GET /metrics`: everything recorded so far, in Prometheus's text format.
pub fn route() -> BoxedFilter<(Response,)> {
    let handle = handle();
    warp::path!("metrics")
        .and(warp::get())
        .map(move || {
            let mut response = Response::new(handle.render().into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        })
        .boxed()
}

/// The route templates of a service's document, matched segment by segment; a literal segment
/// beats a parameter (`/articles/search/{text}` over `/articles/{id}/{x}`).
#[derive(Debug, Clone)]
pub struct Routes {
    templates: Arc<Vec<(String, Vec<Segment>)>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl Routes {
    /// The paths of `document`, and the shared ones every service serves beside them.
    pub fn of(document: &Document) -> Self {
        let shared = ["/openapi.json", "/docs"];
        let templates = document
            .paths
            .paths
            .keys()
            .map(String::as_str)
            .chain(shared)
            .map(|template| (template.to_owned(), segments(template)))
            .collect();
        Self {
            templates: Arc::new(templates),
        }
    }

    /// The template `path` matches, else `unmatched`. Swagger UI's files are all `/docs`.
    pub fn template(&self, path: &str) -> &str {
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs";
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.templates
            .iter()
            .filter(|(_, segments)| segments.len() == parts.len())
            .filter_map(|(template, segments)| {
                let mut literals = 0;
                for (segment, part) in segments.iter().zip(&parts) {
                    match segment {
                        Segment::Literal(literal) if literal == part => literals += 1,
                        Segment::Literal(_) => return None,
                        Segment::Parameter => {}
                    }
                }
                Some((literals, template.as_str()))
            })
            .max_by_key(|(literals, _)| *literals)
            .map_or("unmatched", |(_, template)| template)
    }
}

fn segments(template: &str) -> Vec<Segment> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

/// Records one answered request: `http_requests_total{method, route, status}` and
/// `http_request_duration_seconds{method, route}`.
pub fn record_request(method: &Method, route: &str, status: StatusCode, started: Instant) {
    let method = method.as_str().to_owned();
    let route = route.to_owned();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(),
                      "status" => status.as_u16().to_string())
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
}

/// Wraps a service's whole application: each answer is recorded under its route template.
pub fn recorded(app: BoxedFilter<(Response,)>, routes: Routes) -> BoxedFilter<(Response,)> {
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(app)
        .map(
            move |started: Instant,
                  method: Method,
                  path: warp::path::FullPath,
                  response: Response| {
                record_request(
                    &method,
                    routes.template(path.as_str()),
                    response.status(),
                    started,
                );
                response
            },
        )
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        let templates = [
            "/articles",
            "/articles/{id}",
            "/articles/search/{text}",
            "/users/{id}/grant",
        ];
        Routes {
            templates: Arc::new(
                templates
                    .iter()
                    .map(|template| (template.to_string(), segments(template)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn paths_are_labelled_with_the_template_they_match() {
        let routes = routes();
        assert_eq!(routes.template("/articles"), "/articles");
        assert_eq!(routes.template("/articles/4f0c"), "/articles/{id}");
        assert_eq!(routes.template("/articles/search"), "/articles/{id}");
        assert_eq!(
            routes.template("/articles/search/lamp"),
            "/articles/search/{text}"
        );
        assert_eq!(routes.template("/users/abc/grant"), "/users/{id}/grant");
    }

    #[test]
    fn other_paths_are_unmatched_or_docs_whatever_they_hold() {
        let routes = routes();
        assert_eq!(routes.template("/users/abc/promote"), "unmatched");
        assert_eq!(routes.template("/a/b/c/d/e"), "unmatched");
        assert_eq!(routes.template("/docs/swagger-ui.css"), "/docs");
    }
}
