//! The compose files parse and wire the sidecar beside Ollama as the deployment needs: the
//! base file runs anywhere (no device reservation), the GPU override adds only the NVIDIA
//! reservations (`gpu` for Ollama, `utility` for ollameter's NVML), and the README gives
//! both commands. scripts/compose-check runs them with the real `docker compose`.

use yaml_rust2::{Yaml, YamlLoader};

fn load(file: &str) -> Yaml {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text)
        .expect("valid YAML")
        .remove(0)
}

fn compose() -> Yaml {
    load("docker-compose.yml")
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

fn services(doc: &Yaml) -> Vec<(String, Yaml)> {
    doc["services"]
        .as_hash()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_string(), v.clone()))
        .collect()
}

/// The default of a `${NAME:-default}` compose value, or the value itself.
fn default_of(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
        .map_or(value, |(_, default)| default)
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
    assert!(
        !sidecar["depends_on"]["ollama"].is_badvalue(),
        "starts after Ollama"
    );
    assert_eq!(
        sidecar["environment"]["OLLAMETER_UPSTREAM"].as_str(),
        Some("http://ollama:11434")
    );
    assert_eq!(
        sidecar["environment"]["OLLAMETER_LISTEN"].as_str(),
        Some("0.0.0.0:11435")
    );
    let ports = strings(&sidecar["ports"]);
    assert!(
        ports.iter().any(|p| p == "${OLLAMETER_PORT:-11435}:11435"),
        "port 11435 published by default: {ports:?}"
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
    assert_eq!(
        default_of(sidecar["image"].as_str().expect("image")),
        "ollameter:latest"
    );
    for name in ["ollama", "ollameter"] {
        let test = strings(&services[name]["healthcheck"]["test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{name} has a healthcheck, so `up --wait` means ready"
        );
    }
}

#[test]
fn the_base_file_reserves_no_device_so_it_runs_without_a_gpu() {
    for (name, service) in services(&compose()) {
        assert!(
            service["deploy"].is_badvalue(),
            "docker-compose.yml: {name} has a deploy section; device reservations belong in \
             docker-compose.gpu.yml"
        );
        assert!(service["runtime"].is_badvalue(), "{name} names a runtime");
        assert!(service["devices"].is_badvalue(), "{name} maps devices");
    }
}

#[test]
fn the_gpu_override_adds_only_nvidia_reservations_to_known_services() {
    let base = compose();
    let gpu = load("docker-compose.gpu.yml");
    let wanted = [("ollama", "gpu"), ("ollameter", "utility")];
    for (name, service) in services(&gpu) {
        assert!(
            !base["services"][name.as_str()].is_badvalue(),
            "the override names {name}, which docker-compose.yml does not run"
        );
        let keys: Vec<&str> = service
            .as_hash()
            .expect("a mapping")
            .keys()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(keys, ["deploy"], "{name}: the override only adds devices");
        let devices = &service["deploy"]["resources"]["reservations"]["devices"][0];
        assert_eq!(devices["driver"].as_str(), Some("nvidia"), "{name}");
        assert_eq!(devices["count"].as_str(), Some("all"), "{name}");
        let capability = wanted
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("gpu", |(_, c)| c);
        assert!(
            strings(&devices["capabilities"]).contains(&capability.to_string()),
            "{name} needs {capability}"
        );
    }
    for (name, _) in wanted {
        assert!(
            !gpu["services"][name].is_badvalue(),
            "the GPU override covers {name}"
        );
    }
}

#[test]
fn the_readme_gives_the_cpu_and_the_gpu_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for command in [
        "docker compose up -d\n",
        "docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d\n",
    ] {
        assert!(
            readme.contains(command),
            "README lacks `{}`",
            command.trim()
        );
    }
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

#[test]
fn the_fleet_example_puts_two_ollama_services_behind_one_sidecar() {
    let doc = load("docker-compose.fleet.yml");
    let names: Vec<String> = services(&doc).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ollama-0", "ollama-1", "ollameter"]);
    let sidecar = &doc["services"]["ollameter"];
    let upstream = sidecar["environment"]["OLLAMETER_UPSTREAM"]
        .as_str()
        .expect("OLLAMETER_UPSTREAM");
    assert_eq!(upstream, "http://ollama-0:11434,http://ollama-1:11434");
    // The list is what the configuration accepts: two upstreams named host:port.
    let flags = ollameter::config::Overrides {
        upstream: Some(upstream.into()),
        listen: Some("0.0.0.0:11435".into()),
        ..ollameter::config::Overrides::default()
    };
    let config = ollameter::config::load(None, &[], &flags).expect("valid");
    let hosts: Vec<&str> = config
        .proxy
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(hosts, ["ollama-0:11434", "ollama-1:11434"]);
    for ollama in ["ollama-0", "ollama-1"] {
        assert_eq!(
            sidecar["depends_on"][ollama]["condition"].as_str(),
            Some("service_healthy")
        );
        assert!(
            doc["services"][ollama]["deploy"].is_badvalue(),
            "{ollama}: no device in the base file"
        );
    }
    // The GPU override gives each Ollama its own device, and only devices.
    let gpu = load("docker-compose.fleet.gpu.yml");
    for (name, device) in [("ollama-0", "0"), ("ollama-1", "1")] {
        let service = &gpu["services"][name];
        let reserved = &service["deploy"]["resources"]["reservations"]["devices"][0];
        assert_eq!(strings(&reserved["device_ids"]), [device], "{name}");
        assert_eq!(strings(&reserved["capabilities"]), ["gpu"], "{name}");
        assert_eq!(
            service.as_hash().map(|h| h.len()),
            Some(1),
            "{name}: only deploy"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    assert!(readme.contains("docker-compose.fleet.yml"));
}

#[test]
fn the_otel_override_sends_the_sidecars_spans_to_a_collector_that_receives_them() {
    let base = compose();
    let otel = load("docker-compose.otel.yml");
    let base_services: Vec<String> = services(&base).into_iter().map(|(n, _)| n).collect();
    for (name, _) in services(&otel) {
        assert!(
            base_services.contains(&name) || name == "otel-collector",
            "the override names {name}, which is neither in docker-compose.yml nor the collector"
        );
    }
    let env = &otel["services"]["ollameter"]["environment"];
    let endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        .as_str()
        .expect("the endpoint");
    assert_eq!(endpoint, "http://otel-collector:4318");
    let collector = &otel["services"]["otel-collector"];
    assert!(
        collector["image"]
            .as_str()
            .expect("image")
            .starts_with("otel/opentelemetry-collector")
    );
    let mount = strings(&collector["volumes"])
        .into_iter()
        .find(|v| v.starts_with("./config/otel-collector.yaml:"))
        .expect("the collector's configuration is mounted");
    let target = mount.split(':').nth(1).expect("a target");
    assert!(
        strings(&collector["command"])
            .iter()
            .any(|c| c == &format!("--config={target}")),
        "the collector reads the mounted file"
    );
    // The collector listens where the sidecar sends, and its traces pipeline uses that
    // receiver.
    let config = load("config/otel-collector.yaml");
    assert_eq!(
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str(),
        Some("0.0.0.0:4318")
    );
    let pipeline = &config["service"]["pipelines"]["traces"];
    assert_eq!(strings(&pipeline["receivers"]), vec!["otlp".to_string()]);
    for exporter in strings(&pipeline["exporters"]) {
        assert!(
            !config["exporters"][exporter.as_str()].is_badvalue(),
            "{exporter} is defined"
        );
    }
    // The sidecar accepts those settings.
    let pairs: Vec<(String, String)> = env
        .as_hash()
        .expect("environment map")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().expect("name").to_string(),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    let config = ollameter::config::load(None, &pairs, &ollameter::config::Overrides::default())
        .expect("valid");
    assert!(config.otel.enabled);
    assert_eq!(
        config.otel.traces_endpoint,
        "http://otel-collector:4318/v1/traces"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    assert!(
        readme.contains("docker compose -f docker-compose.yml -f docker-compose.otel.yml up -d"),
        "the README gives the command"
    );
}
