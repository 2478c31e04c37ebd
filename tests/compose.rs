//! The compose file parses and wires the sidecar beside Ollama as the deployment needs:
//! shared PID namespace, a GPU reservation with the utility capability, a named volume
//! for the store, the port published, the upstream set.

use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_ollama_and_the_sidecar_together() {
    let doc = compose();
    let services = &doc["services"];
    assert!(
        services["ollama"]["image"]
            .as_str()
            .expect("ollama image")
            .starts_with("ollama/ollama")
    );
    let sidecar = &services["ollameter"];
    assert!(!sidecar.is_badvalue(), "an ollameter service");
    assert_eq!(
        sidecar["pid"].as_str(),
        Some("service:ollama"),
        "shares Ollama's PID namespace"
    );
    assert_eq!(
        sidecar["environment"]["OLLAMETER_UPSTREAM"].as_str(),
        Some("http://ollama:11434")
    );
    assert_eq!(
        sidecar["environment"]["OLLAMETER_LISTEN"].as_str(),
        Some("0.0.0.0:11435")
    );
    assert!(
        strings(&sidecar["ports"])
            .iter()
            .any(|p| p.ends_with(":11435")),
        "port published"
    );
    let devices = &sidecar["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(devices["driver"].as_str(), Some("nvidia"));
    assert!(
        strings(&devices["capabilities"]).contains(&"utility".to_string()),
        "NVML needs utility"
    );
    let volumes = strings(&sidecar["volumes"]);
    let store = volumes
        .iter()
        .find(|v| v.ends_with(":/data"))
        .expect("a volume on /data");
    let name = store.split(':').next().expect("name");
    assert!(
        !doc["volumes"][name].is_badvalue(),
        "{name} is a named volume"
    );
    assert_eq!(
        sidecar["build"].as_str(),
        Some("."),
        "built from this repository's Dockerfile"
    );
}

#[test]
fn the_dockerfile_runs_unprivileged_with_a_volume_and_a_healthcheck() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "non-root user"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("VOLUME") && l.contains("/data"))
    );
    assert!(lines.iter().any(|l| l.starts_with("HEALTHCHECK")));
    assert!(text.contains("OLLAMETER_LISTEN=0.0.0.0:11435"));
}
