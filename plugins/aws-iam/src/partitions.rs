//! AWS partitions and their STS hosts, as botocore resolves them: the partition
//! of a region from `botocore/data/partitions.json` (regions listed by name, then
//! each partition's `regionRegex`, then the default `aws`), and the regional STS
//! endpoint from STS's endpoint rule set (`https://sts.{Region}.{dnsSuffix}`,
//! except `aws-global`, which is `https://sts.amazonaws.com` signed for us-east-1).

/// One partition: its DNS suffixes and which regions belong to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Partition {
    /// `aws`, `aws-cn`, `aws-us-gov`...
    pub id: &'static str,
    /// `dnsSuffix`: the domain of its regional endpoints.
    pub dns_suffix: &'static str,
    /// `dualStackDnsSuffix`: the domain of its dual-stack endpoints.
    pub dual_stack_dns_suffix: &'static str,
    /// The `PREFIX` alternatives of its `regionRegex`, which is always
    /// `^PREFIX\-\w+\-\d+$` (e.g. `cn` for `cn-north-1`).
    region_prefixes: &'static [&'static str],
    /// The one region listed by name that the pattern does not match
    /// (`aws-global`, `aws-cn-global`...).
    global_region: Option<&'static str>,
}

/// botocore's partitions, in its order (the first match wins; `aws` is the default).
pub const PARTITIONS: &[Partition] = &[
    Partition {
        id: "aws",
        dns_suffix: "amazonaws.com",
        dual_stack_dns_suffix: "api.aws",
        region_prefixes: &["us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx"],
        global_region: Some("aws-global"),
    },
    Partition {
        id: "aws-cn",
        dns_suffix: "amazonaws.com.cn",
        dual_stack_dns_suffix: "api.amazonwebservices.com.cn",
        region_prefixes: &["cn"],
        global_region: Some("aws-cn-global"),
    },
    Partition {
        id: "aws-eusc",
        dns_suffix: "amazonaws.eu",
        dual_stack_dns_suffix: "api.amazonwebservices.eu",
        region_prefixes: &["eusc-de"],
        global_region: None,
    },
    Partition {
        id: "aws-iso",
        dns_suffix: "c2s.ic.gov",
        dual_stack_dns_suffix: "api.aws.ic.gov",
        region_prefixes: &["us-iso"],
        global_region: Some("aws-iso-global"),
    },
    Partition {
        id: "aws-iso-b",
        dns_suffix: "sc2s.sgov.gov",
        dual_stack_dns_suffix: "api.aws.scloud",
        region_prefixes: &["us-isob"],
        global_region: Some("aws-iso-b-global"),
    },
    Partition {
        id: "aws-iso-e",
        dns_suffix: "cloud.adc-e.uk",
        dual_stack_dns_suffix: "api.cloud-aws.adc-e.uk",
        region_prefixes: &["eu-isoe"],
        global_region: Some("aws-iso-e-global"),
    },
    Partition {
        id: "aws-iso-f",
        dns_suffix: "csp.hci.ic.gov",
        dual_stack_dns_suffix: "api.aws.hci.ic.gov",
        region_prefixes: &["us-isof"],
        global_region: Some("aws-iso-f-global"),
    },
    Partition {
        id: "aws-us-gov",
        dns_suffix: "amazonaws.com",
        dual_stack_dns_suffix: "api.aws",
        region_prefixes: &["us-gov"],
        global_region: Some("aws-us-gov-global"),
    },
];

/// The region botocore sends to `https://sts.amazonaws.com`.
const GLOBAL_REGION: &str = "aws-global";
/// The region that endpoint is signed for.
const GLOBAL_SIGNING_REGION: &str = "us-east-1";

impl Partition {
    /// Whether `region` matches `^PREFIX\-\w+\-\d+$` for one of this
    /// partition's prefixes, or is its global region.
    fn contains(&self, region: &str) -> bool {
        if self.global_region == Some(region) {
            return true;
        }
        self.region_prefixes.iter().any(|prefix| {
            let Some((word, number)) =
                region.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).and_then(|r| r.split_once('-'))
            else {
                return false;
            };
            // `\w` takes no `-`, so the split is the only one.
            !word.is_empty()
                && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
        })
    }
}

/// The partition named `id`.
pub fn named(id: &str) -> Option<&'static Partition> {
    PARTITIONS.iter().find(|p| p.id == id)
}

/// The partition `region` belongs to (`aws` for regions nobody knows yet).
pub fn of_region(region: &str) -> &'static Partition {
    PARTITIONS.iter().find(|p| p.contains(region)).unwrap_or(&PARTITIONS[0])
}

/// Whether `region` is a valid host label, as botocore requires of region
/// names: 1 to 63 letters, digits and `-`, not all digits, no `-` at either end.
pub fn valid_region_name(region: &str) -> bool {
    (1..=63).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !region.bytes().all(|b| b.is_ascii_digit())
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The regional STS host of `region` and the region to sign for.
pub fn sts_host(region: &str) -> (String, &str) {
    if region == GLOBAL_REGION {
        return (format!("sts.{}", PARTITIONS[0].dns_suffix), GLOBAL_SIGNING_REGION);
    }
    (format!("sts.{region}.{}", of_region(region).dns_suffix), region)
}

/// Whether `host` (lower case, no port) is an STS endpoint of `partition`:
/// `sts.REGION.SUFFIX` with REGION in the partition, its FIPS (`sts-fips.`)
/// and dual-stack variants, or `sts.amazonaws.com` for `aws`.
pub fn is_sts_host(host: &str, partition: &Partition) -> bool {
    if partition.id == PARTITIONS[0].id && host == format!("sts.{}", partition.dns_suffix) {
        return true;
    }
    let Some(rest) = host.strip_prefix("sts.").or_else(|| host.strip_prefix("sts-fips.")) else { return false };
    [partition.dns_suffix, partition.dual_stack_dns_suffix].iter().any(|suffix| {
        rest.strip_suffix(suffix)
            .and_then(|r| r.strip_suffix('.'))
            .is_some_and(|region| valid_region_name(region) && of_region(region).id == partition.id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_fall_in_their_partition() {
        let cases = [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("il-central-1", "aws"),
            ("aws-global", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("aws-cn-global", "aws-cn"),
            ("eusc-de-east-1", "aws-eusc"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("us-gov-west-1", "aws-us-gov"),
            // By pattern, before botocore lists them.
            ("cn-south-7", "aws-cn"),
            ("us-isob-north-2", "aws-iso-b"),
            // Nobody's: the default.
            ("xx-new-1", "aws"),
            ("US-EAST-1", "aws"),
            ("us-gov-west", "aws"),
        ];
        for (region, partition) in cases {
            assert_eq!(of_region(region).id, partition, "{region}");
        }
    }

    #[test]
    fn sts_hosts_follow_the_partition() {
        assert_eq!(sts_host("cn-north-1"), ("sts.cn-north-1.amazonaws.com.cn".into(), "cn-north-1"));
        assert_eq!(sts_host("us-iso-east-1").0, "sts.us-iso-east-1.c2s.ic.gov");
        assert_eq!(sts_host("us-isob-east-1").0, "sts.us-isob-east-1.sc2s.sgov.gov");
        assert_eq!(sts_host("us-gov-west-1").0, "sts.us-gov-west-1.amazonaws.com");
        assert_eq!(sts_host("us-east-1").0, "sts.us-east-1.amazonaws.com");
        assert_eq!(sts_host("aws-global"), ("sts.amazonaws.com".into(), "us-east-1"));
    }

    #[test]
    fn region_names_are_host_labels() {
        for good in ["us-east-1", "a", "x1", &"a".repeat(63)] {
            assert!(valid_region_name(good), "{good}");
        }
        for bad in ["", "-us", "us-", "123", "us_east", "us.east", "us east", "ü", &"a".repeat(64)] {
            assert!(!valid_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_host_belongs_to_one_partition() {
        let aws = named("aws").unwrap();
        let cn = named("aws-cn").unwrap();
        let gov = named("aws-us-gov").unwrap();
        assert!(is_sts_host("sts.amazonaws.com", aws));
        assert!(is_sts_host("sts.us-west-2.amazonaws.com", aws));
        assert!(is_sts_host("sts-fips.us-east-1.amazonaws.com", aws));
        assert!(is_sts_host("sts.us-east-1.api.aws", aws));
        assert!(is_sts_host("sts.cn-north-1.amazonaws.com.cn", cn));
        assert!(is_sts_host("sts.cn-north-1.api.amazonwebservices.com.cn", cn));
        assert!(is_sts_host("sts.us-gov-west-1.amazonaws.com", gov));
        assert!(!is_sts_host("sts.us-gov-west-1.amazonaws.com", aws));
        assert!(!is_sts_host("sts.eu-west-1.amazonaws.com", gov));
        assert!(!is_sts_host("sts.amazonaws.com", gov));
        assert!(!is_sts_host("sts.cn-north-1.amazonaws.com.cn", aws));
        assert!(!is_sts_host("sts.cn-north-1.amazonaws.com", cn));
        assert!(!is_sts_host("sts.us-east-1.amazonaws.com.evil.example", aws));
        assert!(!is_sts_host("sts..amazonaws.com", aws));
        assert!(!is_sts_host("sts.a.b.amazonaws.com", aws));
        assert!(!is_sts_host("evil.example", aws));
    }
}
