//! Writes the bincode encoding of every crucible upstairs-downstairs
//! message variant (protocol version 13), with edge values, one per line:
//! `NAME HEX`. The types below declare the wire shapes as
//! oxidecomputer/crucible's `protocol` and `common` crates define them
//! (field order, variant order, newtypes); serde's derive and bincode 1.x
//! with its default options then give the bytes crucible sends. A frame on
//! the wire is a u32 little-endian length (including itself) followed by
//! these bytes; the C side adds it.
//!
//! The values are fixed so that the C test can rebuild each message: see
//! tests/unit/test_crucible_protocol.c, which must be kept in step.

use serde::{Serialize, Serializer};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use uuid::Uuid;

#[derive(Serialize, Clone, Copy)]
#[serde(transparent)]
struct JobId(u64);

#[derive(Serialize, Clone, Copy)]
#[serde(transparent)]
struct ReconciliationId(u64);

#[derive(Serialize, Clone, Copy)]
#[serde(transparent)]
struct ClientId(u8);

#[derive(Serialize, Clone, Copy)]
struct BlockIndex(u64);

#[derive(Serialize, Clone, Copy)]
struct ExtentId(u32);

#[derive(Serialize)]
struct Block {
    value: u64,
    shift: u32,
}

#[derive(Serialize)]
struct RegionDefinition {
    block_size: u64,
    extent_size: Block,
    extent_count: u32,
    uuid: Uuid,
    encrypted: bool,
    database_read_version: usize,
    database_write_version: usize,
}

#[derive(Serialize, Clone)]
#[allow(dead_code)]
enum NegotiationError {
    OutOfOrder,
    GenerationZeroIsIllegal,
    GenerationNumberTooLow { requested: u64, actual: u64 },
    IncompatibleVersion { expected: u32, actual: u32 },
    EncryptionMismatch { expected: bool, actual: bool },
    ReadOnlyMismatch { expected: bool, actual: bool },
    UpstairsIdMismatch { expected: Uuid, actual: Uuid },
    SessionIdMismatch { expected: Uuid, actual: Uuid },
}

#[derive(Serialize, Clone)]
#[allow(dead_code)]
enum CrucibleError {
    GenericError(String),
    IoError(String),
    Unsupported(String),
    Disconnect,
    DataLockError,
    RwLockError(String),
    RecvDisconnected,
    SendError(String),
    OffsetUnaligned,
    DataLenUnaligned,
    BlockSizeMismatch,
    InvalidNumberOfBlocks(String),
    OffsetInvalid,
    UpstairsActivateInProgress,
    UpstairsDeactivating,
    UpstairsInactive,
    UuidMismatch,
    EncryptionError(String),
    DecryptionError,
    HashMismatch,
    LBARangeOverlap,
    SubvolumeSizeMismatch,
    SubvolumeTypeMismatch,
    CannotServeBlocks(String),
    CannotReceiveBlocks(String),
    SnapshotFailed(String),
    ModifyingReadOnlyRegion,
    InvalidExtent,
    RepairRequestError(String),
    RepairFilesInvalid(String),
    RepairStreamError(String),
    GenerationNumberInvalid,
    NoLongerActive,
    RegionAssembleError,
    PropertyNotAvailable(String),
    ReplaceRequestInvalid(String),
    MissingContextSlot { block: u64, extent: u32 },
    BadMetadata(String),
    BadContextSlot(String),
    MissingBlockContext,
    RegionIncompatible(String),
    NegotiationError(NegotiationError),
}

#[derive(Serialize, Clone, Copy)]
struct EncryptionContext {
    nonce: [u8; 12],
    tag: [u8; 16],
}

#[derive(Serialize, Clone, Copy)]
struct BlockContext {
    hash: u64,
    encryption_context: Option<EncryptionContext>,
}

#[derive(Serialize)]
struct SnapshotDetails {
    snapshot_name: String,
}

#[derive(Serialize)]
struct WriteHeader {
    upstairs_id: Uuid,
    session_id: Uuid,
    job_id: JobId,
    dependencies: Vec<JobId>,
    start: BlockIndex,
    contexts: Vec<BlockContext>,
}

#[derive(Serialize, Clone, Copy)]
enum ReadBlockContext {
    Empty,
    Encrypted { ctx: EncryptionContext },
    Unencrypted { hash: u64 },
}

#[derive(Serialize)]
struct ReadResponseHeader {
    upstairs_id: Uuid,
    session_id: Uuid,
    job_id: JobId,
    blocks: Result<Vec<ReadBlockContext>, CrucibleError>,
}

/// `bytes::Bytes` and `BytesMut` serialize as a byte string.
struct Data(Vec<u8>);

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[derive(Serialize)]
#[allow(dead_code)]
enum Message {
    HereIAm {
        version: u32,
        upstairs_id: Uuid,
        session_id: Uuid,
        generation: u64,
        read_only: bool,
        encrypted: bool,
        alternate_versions: Vec<u32>,
    },
    YesItsMe {
        version: u32,
        repair_addr: SocketAddr,
    },
    VersionMismatch {
        version: u32,
    },
    ReadOnlyMismatch {
        expected: bool,
    },
    EncryptedMismatch {
        expected: bool,
    },
    PromoteToActive {
        upstairs_id: Uuid,
        session_id: Uuid,
        generation: u64,
    },
    YouAreNowActive {
        upstairs_id: Uuid,
        session_id: Uuid,
        generation: u64,
    },
    YouAreNoLongerActive {
        new_upstairs_id: Uuid,
        new_session_id: Uuid,
        new_gen: u64,
    },
    UuidMismatch {
        expected_id: Uuid,
    },
    Ruok,
    Imok,
    ExtentClose {
        repair_id: ReconciliationId,
        extent_id: ExtentId,
    },
    ExtentReopen {
        repair_id: ReconciliationId,
        extent_id: ExtentId,
    },
    ExtentFlush {
        repair_id: ReconciliationId,
        extent_id: ExtentId,
        client_id: ClientId,
        flush_number: u64,
        gen_number: u64,
    },
    ExtentRepair {
        repair_id: ReconciliationId,
        extent_id: ExtentId,
        source_client_id: ClientId,
        source_repair_address: SocketAddr,
        dest_clients: Vec<ClientId>,
    },
    RepairAckId {
        repair_id: ReconciliationId,
    },
    ExtentError {
        repair_id: ReconciliationId,
        extent_id: ExtentId,
        error: CrucibleError,
    },
    ExtentLiveClose {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        extent_id: ExtentId,
    },
    ExtentLiveFlushClose {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        extent_id: ExtentId,
        flush_number: u64,
        gen_number: u64,
    },
    ExtentLiveRepair {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        extent_id: ExtentId,
        source_client_id: ClientId,
        source_repair_address: SocketAddr,
    },
    ExtentLiveReopen {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        extent_id: ExtentId,
    },
    ExtentLiveNoOp {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
    },
    ExtentLiveCloseAck {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(u64, u64, bool), CrucibleError>,
    },
    ExtentLiveRepairAckId {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    ExtentLiveAckId {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    RegionInfoPlease,
    RegionInfo {
        region_def: RegionDefinition,
    },
    ExtentVersionsPlease,
    ExtentVersions {
        gen_numbers: Vec<u64>,
        flush_numbers: Vec<u64>,
        dirty_bits: Vec<bool>,
    },
    LastFlush {
        last_flush_number: Option<JobId>,
    },
    Write {
        header: WriteHeader,
        data: Data,
    },
    WriteAck {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    Flush {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        flush_number: u64,
        gen_number: u64,
        snapshot_details: Option<SnapshotDetails>,
        extent_limit: Option<ExtentId>,
    },
    FlushAck {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    Barrier {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
    },
    BarrierAck {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    ReadRequest {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        dependencies: Vec<JobId>,
        start: BlockIndex,
        count: u64,
    },
    ReadResponse {
        header: ReadResponseHeader,
        data: Data,
    },
    WriteUnwritten {
        header: WriteHeader,
        data: Data,
    },
    WriteUnwrittenAck {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        result: Result<(), CrucibleError>,
    },
    ErrorReport {
        upstairs_id: Uuid,
        session_id: Uuid,
        job_id: JobId,
        error: CrucibleError,
    },
    Unknown(u32, Data),
}

// ---- the values (tests/unit/test_crucible_protocol.c rebuilds them) ----

/// Upstairs id: bytes 0x01..=0x10; session id: 0x11..=0x20; a third: 0xf0..=0xff.
fn up() -> Uuid {
    Uuid::from_bytes(std::array::from_fn(|i| 0x01 + i as u8))
}
fn sess() -> Uuid {
    Uuid::from_bytes(std::array::from_fn(|i| 0x11 + i as u8))
}
fn other() -> Uuid {
    Uuid::from_bytes(std::array::from_fn(|i| 0xf0 + i as u8))
}
fn deps() -> Vec<JobId> {
    vec![JobId(1000), JobId(1001), JobId(u64::MAX)]
}
fn v4() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4567))
}
fn v6() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42),
        65535,
        0,
        0,
    ))
}
fn enc_ctx() -> EncryptionContext {
    EncryptionContext {
        nonce: std::array::from_fn(|i| 0xa0 + i as u8),
        tag: std::array::from_fn(|i| 0xb0 + i as u8),
    }
}
/// Every error, in variant order; strings name their variant.
fn errors() -> Vec<(String, CrucibleError)> {
    use CrucibleError as E;
    let s = |t: &str| t.to_string();
    let mut v = vec![
        ("GenericError", E::GenericError(s("generic"))),
        ("IoError", E::IoError(s("io"))),
        ("Unsupported", E::Unsupported(s(""))),
        ("Disconnect", E::Disconnect),
        ("DataLockError", E::DataLockError),
        ("RwLockError", E::RwLockError(s("rw"))),
        ("RecvDisconnected", E::RecvDisconnected),
        ("SendError", E::SendError(s("send"))),
        ("OffsetUnaligned", E::OffsetUnaligned),
        ("DataLenUnaligned", E::DataLenUnaligned),
        ("BlockSizeMismatch", E::BlockSizeMismatch),
        ("InvalidNumberOfBlocks", E::InvalidNumberOfBlocks(s("blocks"))),
        ("OffsetInvalid", E::OffsetInvalid),
        ("UpstairsActivateInProgress", E::UpstairsActivateInProgress),
        ("UpstairsDeactivating", E::UpstairsDeactivating),
        ("UpstairsInactive", E::UpstairsInactive),
        ("UuidMismatch", E::UuidMismatch),
        ("EncryptionError", E::EncryptionError(s("enc"))),
        ("DecryptionError", E::DecryptionError),
        ("HashMismatch", E::HashMismatch),
        ("LBARangeOverlap", E::LBARangeOverlap),
        ("SubvolumeSizeMismatch", E::SubvolumeSizeMismatch),
        ("SubvolumeTypeMismatch", E::SubvolumeTypeMismatch),
        ("CannotServeBlocks", E::CannotServeBlocks(s("serve"))),
        ("CannotReceiveBlocks", E::CannotReceiveBlocks(s("receive"))),
        ("SnapshotFailed", E::SnapshotFailed(s("snap\u{e9}"))),
        ("ModifyingReadOnlyRegion", E::ModifyingReadOnlyRegion),
        ("InvalidExtent", E::InvalidExtent),
        ("RepairRequestError", E::RepairRequestError(s("repair request"))),
        ("RepairFilesInvalid", E::RepairFilesInvalid(s("files"))),
        ("RepairStreamError", E::RepairStreamError(s("stream"))),
        ("GenerationNumberInvalid", E::GenerationNumberInvalid),
        ("NoLongerActive", E::NoLongerActive),
        ("RegionAssembleError", E::RegionAssembleError),
        ("PropertyNotAvailable", E::PropertyNotAvailable(s("property"))),
        ("ReplaceRequestInvalid", E::ReplaceRequestInvalid(s("replace"))),
        ("MissingContextSlot", E::MissingContextSlot { block: u64::MAX, extent: 7 }),
        ("BadMetadata", E::BadMetadata(s("metadata"))),
        ("BadContextSlot", E::BadContextSlot(s("slot"))),
        ("MissingBlockContext", E::MissingBlockContext),
        ("RegionIncompatible", E::RegionIncompatible(s("incompatible"))),
    ];
    let negotiation = vec![
        ("OutOfOrder", NegotiationError::OutOfOrder),
        ("GenerationZeroIsIllegal", NegotiationError::GenerationZeroIsIllegal),
        ("GenerationNumberTooLow", NegotiationError::GenerationNumberTooLow { requested: 3, actual: 9 }),
        ("IncompatibleVersion", NegotiationError::IncompatibleVersion { expected: 13, actual: 12 }),
        ("EncryptionMismatch", NegotiationError::EncryptionMismatch { expected: true, actual: false }),
        ("ReadOnlyMismatch", NegotiationError::ReadOnlyMismatch { expected: false, actual: true }),
        ("UpstairsIdMismatch", NegotiationError::UpstairsIdMismatch { expected: up(), actual: other() }),
        ("SessionIdMismatch", NegotiationError::SessionIdMismatch { expected: sess(), actual: other() }),
    ];
    for (name, n) in negotiation {
        v.push((Box::leak(format!("NegotiationError.{}", name).into_boxed_str()), E::NegotiationError(n)));
    }
    v.into_iter().map(|(n, e)| (n.to_string(), e)).collect()
}

fn messages() -> Vec<(String, Message)> {
    use Message::*;
    let mut v: Vec<(String, Message)> = Vec::new();
    let mut add = |name: &str, m: Message| v.push((name.to_string(), m));
    add(
        "HereIAm",
        HereIAm {
            version: 13,
            upstairs_id: up(),
            session_id: sess(),
            generation: 42,
            read_only: false,
            encrypted: true,
            alternate_versions: vec![12, 11],
        },
    );
    add(
        "HereIAm.edges",
        HereIAm {
            version: u32::MAX,
            upstairs_id: Uuid::nil(),
            session_id: Uuid::from_bytes([0xff; 16]),
            generation: u64::MAX,
            read_only: true,
            encrypted: false,
            alternate_versions: vec![],
        },
    );
    add("YesItsMe.v4", YesItsMe { version: 13, repair_addr: v4() });
    add("YesItsMe.v6", YesItsMe { version: 13, repair_addr: v6() });
    add("VersionMismatch", VersionMismatch { version: 14 });
    add("ReadOnlyMismatch", ReadOnlyMismatch { expected: true });
    add("EncryptedMismatch", EncryptedMismatch { expected: false });
    add("PromoteToActive", PromoteToActive { upstairs_id: up(), session_id: sess(), generation: 7 });
    add("YouAreNowActive", YouAreNowActive { upstairs_id: up(), session_id: sess(), generation: 7 });
    add(
        "YouAreNoLongerActive",
        YouAreNoLongerActive { new_upstairs_id: other(), new_session_id: sess(), new_gen: 8 },
    );
    add("UuidMismatch", UuidMismatch { expected_id: other() });
    add("Ruok", Ruok);
    add("Imok", Imok);
    add("ExtentClose", ExtentClose { repair_id: ReconciliationId(5), extent_id: ExtentId(9) });
    add("ExtentReopen", ExtentReopen { repair_id: ReconciliationId(6), extent_id: ExtentId(u32::MAX) });
    add(
        "ExtentFlush",
        ExtentFlush {
            repair_id: ReconciliationId(7),
            extent_id: ExtentId(3),
            client_id: ClientId(2),
            flush_number: 100,
            gen_number: 4,
        },
    );
    add(
        "ExtentRepair",
        ExtentRepair {
            repair_id: ReconciliationId(8),
            extent_id: ExtentId(4),
            source_client_id: ClientId(1),
            source_repair_address: v4(),
            dest_clients: vec![ClientId(0), ClientId(2)],
        },
    );
    add("RepairAckId", RepairAckId { repair_id: ReconciliationId(u64::MAX) });
    add(
        "ExtentError",
        ExtentError {
            repair_id: ReconciliationId(9),
            extent_id: ExtentId(5),
            error: CrucibleError::IoError("disk".to_string()),
        },
    );
    add(
        "ExtentLiveClose",
        ExtentLiveClose { upstairs_id: up(), session_id: sess(), job_id: JobId(1002), dependencies: deps(), extent_id: ExtentId(6) },
    );
    add(
        "ExtentLiveFlushClose",
        ExtentLiveFlushClose {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1003),
            dependencies: deps(),
            extent_id: ExtentId(6),
            flush_number: 101,
            gen_number: 5,
        },
    );
    add(
        "ExtentLiveRepair",
        ExtentLiveRepair {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1004),
            dependencies: deps(),
            extent_id: ExtentId(6),
            source_client_id: ClientId(0),
            source_repair_address: v6(),
        },
    );
    add(
        "ExtentLiveReopen",
        ExtentLiveReopen { upstairs_id: up(), session_id: sess(), job_id: JobId(1005), dependencies: deps(), extent_id: ExtentId(6) },
    );
    add(
        "ExtentLiveNoOp",
        ExtentLiveNoOp { upstairs_id: up(), session_id: sess(), job_id: JobId(1006), dependencies: vec![] },
    );
    add(
        "ExtentLiveCloseAck.ok",
        ExtentLiveCloseAck { upstairs_id: up(), session_id: sess(), job_id: JobId(1007), result: Ok((5, 101, true)) },
    );
    add(
        "ExtentLiveCloseAck.err",
        ExtentLiveCloseAck {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1007),
            result: Err(CrucibleError::InvalidExtent),
        },
    );
    add(
        "ExtentLiveRepairAckId",
        ExtentLiveRepairAckId { upstairs_id: up(), session_id: sess(), job_id: JobId(1008), result: Ok(()) },
    );
    add(
        "ExtentLiveAckId",
        ExtentLiveAckId {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1009),
            result: Err(CrucibleError::GenericError("live".to_string())),
        },
    );
    add("RegionInfoPlease", RegionInfoPlease);
    add(
        "RegionInfo",
        RegionInfo {
            region_def: RegionDefinition {
                block_size: 4096,
                extent_size: Block { value: 16384, shift: 12 },
                extent_count: 64,
                uuid: other(),
                encrypted: true,
                database_read_version: 1,
                database_write_version: 1,
            },
        },
    );
    add("ExtentVersionsPlease", ExtentVersionsPlease);
    add(
        "ExtentVersions",
        ExtentVersions {
            gen_numbers: vec![1, 2, 3],
            flush_numbers: vec![10, 20, u64::MAX],
            dirty_bits: vec![false, true, false],
        },
    );
    add(
        "ExtentVersions.empty",
        ExtentVersions { gen_numbers: vec![], flush_numbers: vec![], dirty_bits: vec![] },
    );
    add("LastFlush.some", LastFlush { last_flush_number: Some(JobId(77)) });
    add("LastFlush.none", LastFlush { last_flush_number: None });
    let contexts = vec![
        BlockContext { hash: 0x0123456789abcdef, encryption_context: None },
        BlockContext { hash: u64::MAX, encryption_context: Some(enc_ctx()) },
    ];
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    add(
        "Write",
        Write {
            header: WriteHeader {
                upstairs_id: up(),
                session_id: sess(),
                job_id: JobId(1010),
                dependencies: deps(),
                start: BlockIndex(12345),
                contexts: contexts.clone(),
            },
            data: Data(data.clone()),
        },
    );
    add(
        "WriteAck",
        WriteAck { upstairs_id: up(), session_id: sess(), job_id: JobId(1010), result: Ok(()) },
    );
    add(
        "Flush",
        Flush {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1011),
            dependencies: deps(),
            flush_number: 102,
            gen_number: 6,
            snapshot_details: Some(SnapshotDetails { snapshot_name: "snap-1".to_string() }),
            extent_limit: Some(ExtentId(12)),
        },
    );
    add(
        "Flush.plain",
        Flush {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1012),
            dependencies: vec![],
            flush_number: 103,
            gen_number: 6,
            snapshot_details: None,
            extent_limit: None,
        },
    );
    add(
        "FlushAck",
        FlushAck {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1011),
            result: Err(CrucibleError::NoLongerActive),
        },
    );
    add(
        "Barrier",
        Barrier { upstairs_id: up(), session_id: sess(), job_id: JobId(1013), dependencies: deps() },
    );
    add(
        "BarrierAck",
        BarrierAck { upstairs_id: up(), session_id: sess(), job_id: JobId(1013), result: Ok(()) },
    );
    add(
        "ReadRequest",
        ReadRequest {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1014),
            dependencies: deps(),
            start: BlockIndex(u64::MAX - 1),
            count: 3,
        },
    );
    add(
        "ReadResponse",
        ReadResponse {
            header: ReadResponseHeader {
                upstairs_id: up(),
                session_id: sess(),
                job_id: JobId(1014),
                blocks: Ok(vec![
                    ReadBlockContext::Empty,
                    ReadBlockContext::Encrypted { ctx: enc_ctx() },
                    ReadBlockContext::Unencrypted { hash: 0xfedcba9876543210 },
                ]),
            },
            data: Data(data.clone()),
        },
    );
    add(
        "ReadResponse.err",
        ReadResponse {
            header: ReadResponseHeader {
                upstairs_id: up(),
                session_id: sess(),
                job_id: JobId(1015),
                blocks: Err(CrucibleError::HashMismatch),
            },
            data: Data(vec![]),
        },
    );
    add(
        "WriteUnwritten",
        WriteUnwritten {
            header: WriteHeader {
                upstairs_id: up(),
                session_id: sess(),
                job_id: JobId(1016),
                dependencies: vec![],
                start: BlockIndex(0),
                contexts: vec![contexts[0]],
            },
            data: Data(data[..512].to_vec()),
        },
    );
    add(
        "WriteUnwrittenAck",
        WriteUnwrittenAck {
            upstairs_id: up(),
            session_id: sess(),
            job_id: JobId(1016),
            result: Err(CrucibleError::ModifyingReadOnlyRegion),
        },
    );
    for (name, error) in errors() {
        add(
            &format!("ErrorReport.{}", name),
            ErrorReport { upstairs_id: up(), session_id: sess(), job_id: JobId(1017), error },
        );
    }
    add("Unknown", Unknown(0xdeadbeef, Data(vec![1, 2, 3])));
    v
}

/// crucible's integrity_hash: XXH64 (seed 0) over its arguments in turn.
fn integrity_hash(args: &[&[u8]]) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for a in args {
        h.update(a);
    }
    h.digest()
}

/// `hashes`: NAME HASH-HEX for plain blocks (the data) and encrypted ones
/// (nonce, tag, then the ciphertext), inputs built from their lengths.
fn hashes(out: &mut impl Write) {
    writeln!(out, "# crucible integrity hash (XXH64, seed 0): NAME HASH; do not edit").unwrap();
    for len in [0usize, 1, 31, 32, 33, 512, 4096] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        writeln!(out, "plain.{} {:016x}", len, integrity_hash(&[&data])).unwrap();
        let e = enc_ctx();
        writeln!(out, "encrypted.{} {:016x}", len, integrity_hash(&[&e.nonce, &e.tag, &data]))
            .unwrap();
    }
}

fn main() {
    let out = std::io::stdout();
    let mut out = out.lock();
    if std::env::args().nth(1).as_deref() == Some("hashes") {
        hashes(&mut out);
        return;
    }
    writeln!(out, "# crucible protocol version 13: NAME HEX (bincode of Message, no frame length)").unwrap();
    writeln!(out, "# written by tests/crucible/golden (make crucible-vectors); do not edit").unwrap();
    for (name, m) in messages() {
        let bytes = bincode::serialize(&m).expect("serialize");
        let hex: String = bytes.iter().map(|b| format!("{:02x}", b)).collect();
        writeln!(out, "{} {}", name, hex).unwrap();
    }
}
