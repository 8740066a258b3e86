//! Boxes in the real Docker engine: images imported once however many machines ask at
//! the same time (the libvirt half is `libvirt::box_volumes`).

use crate::support::engines::docker;
use crate::support::{require_docker, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_image_builds_and_imports_once_for_parallel_callers() {
    require_docker();
    let docker = docker().await;
    docker.ping().await.expect("docker ping");
    let w = TestEnv::build().own_home().busybox_copy().create();
    let env = hdev::envfile::load(&w.path().join("Envfile")).expect("valid Envfile");
    let store = hdev::boxes::Store::at(w.home().to_path_buf());

    let calls = (0..20)
        .map(|_| hdev::backend::docker::image::docker_image_in(&store, &docker, &env, "busybox"));
    let refs = futures_util::future::join_all(calls).await;
    let refs: Vec<String> = refs.into_iter().map(|r| r.expect("image")).collect();
    assert!(refs.iter().all(|r| r == &refs[0]), "{refs:?}");
    assert!(refs[0].starts_with("hdev-box/busybox:"), "{}", refs[0]);
    assert_eq!(store.list().expect("list").len(), 1, "built once");

    let b = store.list().expect("list").remove(0);
    let img = docker.inspect_image(&refs[0]).await.expect("inspect");
    let labels = img.config.and_then(|c| c.labels).expect("labels");
    assert_eq!(labels.get("hdev.box").map(String::as_str), Some("busybox"));
    assert_eq!(labels.get("hdev.box.digest"), Some(&b.digest.to_string()));
    let created = img.created.clone();

    // Again: reused, not imported again.
    let again = hdev::backend::docker::image::docker_image_in(&store, &docker, &env, "busybox")
        .await
        .expect("image");
    assert_eq!(again, refs[0]);
    let img = docker.inspect_image(&again).await.expect("inspect");
    assert_eq!(img.created, created);

    // A box that is not declared is named in the error.
    let err = hdev::backend::docker::image::docker_image_in(&store, &docker, &env, "nope")
        .await
        .expect_err("unknown box");
    assert!(err.to_string().contains("no box `nope`"), "{err}");

    // The image stays: boxes are reproducible, so every test that builds the busybox
    // recipe, in any store, gets this very image, and may be using it right now.
}
