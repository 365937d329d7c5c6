//! The etcd store's tests: its URLs, and the contract on a real cluster (skipped where
//! `etcd` is missing).

use super::*;

#[test]
fn the_url_lists_members_with_etcds_port_by_default() {
    assert_eq!(
        members_of("etcd://10.0.0.1:2379,10.0.0.2,[::1]:2380/").unwrap(),
        ["10.0.0.1:2379", "10.0.0.2:2379", "[::1]:2380"]
    );
    assert_eq!(members_of("etcd://[::1]").unwrap(), ["[::1]:2379"]);
    for (url, why) in [
        ("etcd://u:pw@h:1", "authentication is not supported"),
        ("etcd://h:1/prefix", "lists members only"),
        ("etcd://h:port", "the port must be a number"),
        ("etcd://h:1,,h:2", "a member needs a host"),
    ] {
        let e = members_of(url).unwrap_err();
        assert!(e.contains(why), "{url}: {e}");
        assert!(!e.contains("pw"), "{e}");
    }
}

use super::super::contract;
use request_access_testkit::EtcdCluster;

async fn connect(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(&cluster.url(), &StoreConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn honours_the_store_contract() {
    let Some(cluster) = EtcdCluster::start(1) else {
        return;
    };
    contract::check(&connect(&cluster).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_histories_are_linearizable() {
    let Some(cluster) = EtcdCluster::start(3) else {
        return;
    };
    contract::check_linearizable(std::sync::Arc::new(connect(&cluster).await), 4, 150).await;
}

#[tokio::test]
async fn receives_a_copy_of_another_store() {
    let Some(cluster) = EtcdCluster::start(1) else {
        return;
    };
    contract::check_copy(&connect(&cluster).await).await;
}
