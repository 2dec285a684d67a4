//! A kube-proxy (iptables mode) style rule set as `iptables-save` writes it, for the
//! `--rules` benchmark (`benches/correlate.rs`) and `examples/gen_pair.rs --kube-services`.

/// A kube-proxy (iptables mode) style rule set of `services` services, eleven rules each,
/// plus Docker's masquerade of 172.17.0.0/16, as `iptables-save` writes it.
pub fn kube_rules(services: u32) -> String {
    let mut nat = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n-A KUBE-POSTROUTING -j MASQUERADE --random-fully\n",
    );
    for i in 0..services {
        let (hi, lo) = (i / 250, i % 250 + 1);
        let svc = format!("KUBE-SVC-S{i:05}");
        nat.push_str(&format!(":{svc} - [0:0]\n"));
        rules.push_str(&format!(
            "-A KUBE-SERVICES -d 10.96.{hi}.{lo}/32 -p tcp -m comment --comment \"ns/s{i}:http cluster IP\" -m tcp --dport 80 -j {svc}\n"
        ));
        for (k, p) in [
            (0, Some("0.33333333349")),
            (1, Some("0.50000000000")),
            (2, None),
        ] {
            let sep = format!("KUBE-SEP-S{i:05}E{k}");
            nat.push_str(&format!(":{sep} - [0:0]\n"));
            let stat = p
                .map(|p| format!(" -m statistic --mode random --probability {p}"))
                .unwrap_or_default();
            let ep = format!("10.244.{hi}.{}", (lo * 3 + k) % 250 + 1);
            rules.push_str(&format!(
                "-A {svc} -m comment --comment \"ns/s{i}:http -> {ep}:8080\"{stat} -j {sep}\n"
            ));
            rules.push_str(&format!("-A {sep} -s {ep}/32 -j KUBE-MARK-MASQ\n"));
            rules.push_str(&format!(
                "-A {sep} -p tcp -m tcp -j DNAT --to-destination {ep}:8080\n"
            ));
        }
        rules.push_str(&format!(
            "-A KUBE-NODEPORTS -p tcp -m comment --comment \"ns/s{i}:http\" -m tcp --dport {} -j {svc}\n",
            30000 + i % 2768
        ));
    }
    rules.push_str("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    format!("{nat}{rules}COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -i docker0 ! -o docker0 -j ACCEPT\n-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n")
}
