//! The data service over real TCP on loopback: values of any size arrive
//! whole and equal, missing keys and oversized values are clear errors, and
//! a service with a token serves only peers that present it.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use rask_core::{ArrayValue, Key, Value};
use rask_worker::DataStore;
use rask_worker::data::{DataClient, DataService, FetchError};
use tokio_stream::wrappers::TcpListenerStream;

async fn serve(store: Arc<DataStore>) -> String {
    serve_with_token(store, None).await
}

async fn serve_with_token(store: Arc<DataStore>, token: Option<&str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(DataService::new(store).into_server(token))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    format!("http://{addr}")
}

fn big_array(n: usize) -> Value {
    let data: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    Value::Array(ArrayValue::F64(ArrayD::from_shape_vec(IxDyn(&[n]), data).expect("shape").into_shared()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_small_and_large_values_in_order() {
    let store = Arc::new(DataStore::new());
    let big = big_array(3_000_000); // 24 MB: 23 pieces
    store.insert(Key::chunk(Arc::from("x"), &[0, 1]), big.clone());
    store.insert(Key::new("small"), Value::Int(42));
    store.insert(Key::new("empty"), Value::None);
    let addr = serve(store).await;
    let mut client = DataClient::connect(&addr, 1 << 30).await.expect("connects");
    let keys = [Key::new("small"), Key::chunk(Arc::from("x"), &[0, 1]), Key::new("empty")];
    let got = client.fetch(&keys).await.expect("fetches");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (keys[0].clone(), Value::Int(42)));
    assert_eq!(got[1].0, keys[1]);
    assert!(got[1].1 == big, "the large value arrives whole and equal");
    assert_eq!(got[2].1, Value::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_and_oversized_values_are_errors() {
    let store = Arc::new(DataStore::new());
    store.insert(Key::new("big"), big_array(500_000));
    let addr = serve(store).await;
    let mut client = DataClient::connect(&addr, 1 << 30).await.expect("connects");
    let err = client.fetch(&[Key::new("nowhere")]).await.expect_err("missing");
    assert!(matches!(&err, FetchError::Status(s) if s.code() == tonic::Code::NotFound), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
    let mut small_limit = DataClient::connect(&addr, 1000).await.expect("connects");
    let err = small_limit.fetch(&[Key::new("big")]).await.expect_err("over the limit");
    assert!(matches!(err, FetchError::Wire(rask_proto::WireError::TooLarge { .. })), "{err}");
    let err = DataClient::connect("http://127.0.0.1:1", 10).await.expect_err("nothing listens on port 1");
    assert!(matches!(err, FetchError::Connect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_data() {
    let store = Arc::new(DataStore::new());
    store.insert(Key::new("secret"), Value::Int(7));
    let addr = serve_with_token(store, Some("s3cret")).await;
    for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret-and-more")] {
        let mut client = DataClient::connect_with(&addr, 1 << 20, None, token).await.expect("connects");
        let err = client.fetch(&[Key::new("secret")]).await.expect_err("refused without the token");
        assert!(matches!(&err, FetchError::Status(s) if s.code() == tonic::Code::Unauthenticated), "{token:?}: {err}");
        assert!(err.to_string().contains("token"), "{err}");
    }
    let mut client = DataClient::connect_with(&addr, 1 << 20, None, Some("s3cret")).await.expect("connects");
    let got = client.fetch(&[Key::new("secret")]).await.expect("the token opens it");
    assert_eq!(got, vec![(Key::new("secret"), Value::Int(7))]);
}
