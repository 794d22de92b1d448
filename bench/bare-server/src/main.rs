//! A bare actix-web server for the HTTP load benchmark (bench/http-load.sh).
//!
//! It serves `GET /v1/lookup?code=...` from the same built-in demo corpus as
//! ucca-auth and returns the same JSON, but with no middleware: no request id,
//! no access log, no credential check, no quota and no usage record. The ratio
//! of its throughput to the real server's is the cost of everything in front of
//! the handler.
//!
//! Usage: `bare-server [ADDRESS]`, default `127.0.0.1:18090`. It uses as many
//! HTTP workers as ucca-auth does by default (one per core).

use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ucca_actors::corpus::Corpus;

const DEMO_CORPUS: &str = include_str!("../../../data/corpus.json");
const DEFAULT_ADDRESS: &str = "127.0.0.1:18090";

async fn lookup(corpus: web::Data<Arc<Corpus>>, request: HttpRequest) -> HttpResponse {
    let code = request
        .query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .unwrap_or("");
    if code.is_empty() || code.len() > 12 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return HttpResponse::BadRequest().finish();
    }
    match corpus.lookup(code) {
        Some(entry) => HttpResponse::Ok().json(entry),
        None => HttpResponse::NotFound().finish(),
    }
}

fn main() -> std::io::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
    let corpus = Corpus::from_json("built-in demo corpus", DEMO_CORPUS)
        .map_err(|error| std::io::Error::other(format!("the demo corpus is invalid: {error}")))?;
    let corpus = web::Data::new(Arc::new(corpus));
    let workers = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    eprintln!("bare-server listening on {address} with {workers} workers");

    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || App::new().app_data(corpus.clone()).route("/v1/lookup", web::get().to(lookup)))
            .workers(workers)
            .bind(&address)?
            .run()
            .await
    })
}
