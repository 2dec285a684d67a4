//! Words of `ct-hairpin-no-masq`.

use super::{ct_words, unexplained};
use crate::audit::Finding;
use crate::report::fmt::tuple_proto;

pub fn explain(f: &Finding) -> (String, String) {
    let Some(w) = ct_words(f) else {
        return unexplained(f);
    };
    (
        format!(
            "{} is DNATed to the client itself without masquerade: the reply goes from {} to itself and never back through NAT",
            tuple_proto(&w.orig),
            w.orig.src
        ),
        "Hairpin traffic needs masquerade: kube-proxy marks it (KUBE-MARK-MASQ, 0x4000) and masquerades in KUBE-POSTROUTING; Docker adds `-A POSTROUTING -s C -d C -p tcp --dport P -j MASQUERADE` per published port. Also check the bridge port's hairpin_mode (FM-07).".into(),
    )
}
