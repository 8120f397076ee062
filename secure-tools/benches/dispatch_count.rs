//! A fixed number of in-process `tools/call` dispatches, for an instruction count under callgrind (deterministic,
//! unlike the clock on a shared machine). Run it twice with different counts and divide the difference:
//!
//! ```sh
//! cargo bench -p secure-tools --bench dispatch_count --no-run
//! valgrind --tool=callgrind target/release/deps/dispatch_count-* secure_ignored 2000
//! valgrind --tool=callgrind target/release/deps/dispatch_count-* secure_ignored 4000
//! ```
//!
//! Variants: `rmcp` (rmcp's own `#[tool_router]`), `secure_ignored` (the whole pipeline, a sink that does nothing),
//! `secure_memory` (the whole pipeline, the last 1,024 records kept in memory), as in the `dispatch` benchmark.

use std::hint::black_box;

use rmcp::ServerHandler;
use rmcp::service::{RequestContext, RoleServer};

#[allow(dead_code)]
mod common;
use common::{Ignore, Plain, Ring, params, peer, secure};

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "secure_ignored".to_owned());
    let calls: usize = args
        .next()
        .map_or(1000, |n| n.parse().expect("a count of calls"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = peer(&runtime);
    let context =
        || RequestContext::<RoleServer>::new(rmcp::model::RequestId::Number(1), peer.clone());
    let plain = Plain::new();
    let server = match variant.as_str() {
        "rmcp" => None,
        "secure_ignored" => Some(secure(Ignore)),
        "secure_memory" => Some(secure(Ring::default())),
        other => panic!("unknown variant {other}: rmcp, secure_ignored or secure_memory"),
    };
    runtime.block_on(async {
        for _ in 0..calls {
            let result = match &server {
                None => plain.call_tool(params(), context()).await,
                Some(server) => server.call_tool(params(), context()).await,
            };
            black_box(result.unwrap());
        }
    });
}
