//! A bbolt database file read into a tree and written back as one more transaction (pure: bytes
//! in, page writes out). podman keeps netavark's IP allocations in one (`ipam.db`, containers/
//! common `libnetwork/netavark/ipam.go`); a container podman forgot keeps its address reserved
//! there forever, and no tool but podman's own Go code edits it.
//!
//! The format is etcd-io/bbolt's (`internal/common/page.go`, `meta.go`, `bucket.go`,
//! `internal/freelist/shared.go`; unchanged since boltdb v1.3, the vendored 1.3.6 of podman 4.3
//! included): fixed-size pages addressed by id; pages 0 and 1 are meta pages, the valid one with
//! the higher transaction id wins; a meta names the root bucket's page and the freelist page.
//! A bucket is a B+tree of branch and leaf pages, or — when small — stored inline in its
//! parent's leaf value after its 16-byte header.
//!
//! A commit works as bbolt's own (`tx.go` `Commit`): the whole tree is written to pages no
//! live structure uses (free ones, else past the high-water mark), then the meta page of the
//! *other* slot with the transaction id + 1. Until that meta is written (and after a torn write,
//! which fails its checksum) the file still opens as it was, so a kill at any moment loses
//! nothing. Every length and page id read from the file is bounds-checked: a crafted or
//! truncated file is an error, never a panic or an unbounded allocation.

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Context, Result};

/// `common.Magic`, `common.Version`.
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// `common.PgidNoFreelist`: the freelist is not persisted (`NoFreelistSync`).
const NO_FREELIST: u64 = u64::MAX;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;
/// Where the checksum sits in the meta (`unsafe.Offsetof(Meta{}.checksum)`); it covers what
/// comes before it.
const META_CHECKSUM_AT: usize = 56;
const META_LEN: usize = 64;
/// Bounds for a file archy reads whole: far above what an IPAM database holds (a few networks
/// of at most a few thousand addresses), far below what a node's memory can take.
pub const MAX_FILE: u64 = 64 << 20;
const MAX_DEPTH: usize = 32;

/// A value or a nested bucket, as one key of a bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Value(Vec<u8>),
    Bucket(Bucket),
}

/// A bucket's keys in order (bbolt keeps them sorted bytewise) and its sequence. Two buckets
/// are equal when their content is, wherever they are stored.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub sequence: u64,
    pub items: Vec<(Vec<u8>, Item)>,
    /// Where the file holds it (a bucket with pages of its own): a commit keeps an unchanged
    /// bucket where it is, as bbolt's copy-on-write writes only the nodes a change dirtied.
    stored: Option<Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    root: u64,
    /// Its pages and its sub-buckets', overflow included.
    pages: Vec<u64>,
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Self) -> bool {
        self.sequence == other.sequence && self.items == other.items
    }
}

impl Eq for Bucket {}

impl Bucket {
    /// A bucket not (yet) in any file; `items` sorted by key.
    pub fn new(sequence: u64, items: Vec<(Vec<u8>, Item)>) -> Bucket {
        Bucket {
            sequence,
            items,
            stored: None,
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Item> {
        self.items
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()
            .map(|i| &self.items[i].1)
    }

    pub fn bucket(&self, key: &[u8]) -> Option<&Bucket> {
        match self.get(key) {
            Some(Item::Bucket(b)) => Some(b),
            _ => None,
        }
    }

    pub fn bucket_mut(&mut self, key: &[u8]) -> Option<&mut Bucket> {
        let i = self
            .items
            .binary_search_by(|(k, _)| k.as_slice().cmp(key))
            .ok()?;
        match &mut self.items[i].1 {
            Item::Bucket(b) => Some(b),
            Item::Value(_) => None,
        }
    }

    /// Delete a plain value (not a bucket); whether it was there.
    pub fn delete_value(&mut self, key: &[u8]) -> bool {
        match self.items.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
            Ok(i) if matches!(self.items[i].1, Item::Value(_)) => {
                self.items.remove(i);
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    flags: u32,
    root: u64,
    root_sequence: u64,
    freelist: u64,
    /// High-water mark: the first page id past the file's used pages.
    pgid: u64,
    txid: u64,
}

/// An opened database: its tree and what a commit needs to know about the pages.
#[derive(Debug, Clone)]
pub struct Db {
    meta: Meta,
    pub root: Bucket,
    /// Pages the current meta reaches (tree and freelist, overflow pages included).
    live_pages: BTreeSet<u64>,
    /// The freelist as read (empty when not persisted).
    free_pages: BTreeSet<u64>,
}

/// What a commit writes: every page at its offset, then (after they are durable) the meta.
#[derive(Debug, Clone)]
pub struct Commit {
    pub pages: Vec<(u64, Vec<u8>)>,
    pub meta: (u64, Vec<u8>),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    let s = b
        .get(at..at + 2)
        .context("truncated bbolt page (u16 past the end)")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    let s = b
        .get(at..at + 4)
        .context("truncated bbolt page (u32 past the end)")?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    let s = b
        .get(at..at + 8)
        .context("truncated bbolt page (u64 past the end)")?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// FNV-1a 64, what Go's `hash/fnv` `New64a` computes (the meta checksum).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn parse_meta(file: &[u8], offset: usize) -> Result<Meta> {
    let m = file
        .get(offset + PAGE_HEADER..offset + PAGE_HEADER + META_LEN)
        .context("file too short for a meta page")?;
    ensure!(u32_at(m, 0)? == MAGIC, "not a bbolt file (magic)");
    ensure!(
        u32_at(m, 4)? == VERSION,
        "bbolt file format version {} (expected {VERSION})",
        u32_at(m, 4)?
    );
    ensure!(
        u64_at(m, META_CHECKSUM_AT)? == fnv1a64(&m[..META_CHECKSUM_AT]),
        "bbolt meta checksum mismatch"
    );
    Ok(Meta {
        page_size: u32_at(m, 8)?,
        flags: u32_at(m, 12)?,
        root: u64_at(m, 16)?,
        root_sequence: u64_at(m, 24)?,
        freelist: u64_at(m, 32)?,
        pgid: u64_at(m, 40)?,
        txid: u64_at(m, 48)?,
    })
}

struct Reader<'a> {
    file: &'a [u8],
    page_size: usize,
    hwm: u64,
    seen: BTreeSet<u64>,
    /// Page ids in the order read.
    trail: Vec<u64>,
}

impl Reader<'_> {
    /// Page `id` with its overflow pages, checked to be inside the file and below the mark.
    fn page(&mut self, id: u64) -> Result<&[u8]> {
        ensure!(
            id >= 2 && id < self.hwm,
            "bbolt page id {id} outside 2..{}",
            self.hwm
        );
        let start = usize::try_from(id)? * self.page_size;
        let overflow = u64::from(u32_at(self.file, start + 12)?);
        ensure!(
            u64_at(self.file, start)? == id,
            "bbolt page {id} names itself {}",
            u64_at(self.file, start)?
        );
        ensure!(
            id + overflow < self.hwm,
            "bbolt page {id} overflows past the high-water mark"
        );
        for p in id..=id + overflow {
            ensure!(self.seen.insert(p), "bbolt page {p} is reached twice");
            self.trail.push(p);
        }
        let end = start + (usize::try_from(overflow)? + 1) * self.page_size;
        self.file
            .get(start..end)
            .with_context(|| format!("bbolt page {id} past the end of the file"))
    }

    fn bucket_at(&mut self, root: u64, sequence: u64, depth: usize) -> Result<Bucket> {
        let first = self.trail.len();
        let mut items = Vec::new();
        self.node(root, depth, &mut items)?;
        ensure!(
            items.windows(2).all(|w| w[0].0 < w[1].0),
            "bbolt bucket keys out of order"
        );
        Ok(Bucket {
            sequence,
            items,
            // Depth first: the pages read since `first` are this bucket's.
            stored: Some(Stored {
                root,
                pages: self.trail[first..].to_vec(),
            }),
        })
    }

    /// The leaf items under page `id`, in key order.
    fn node(&mut self, id: u64, depth: usize, out: &mut Vec<(Vec<u8>, Item)>) -> Result<()> {
        ensure!(depth < MAX_DEPTH, "bbolt tree deeper than {MAX_DEPTH}");
        let page = self.page(id)?.to_vec();
        match u16_at(&page, 8)? {
            BRANCH_PAGE => {
                let count = usize::from(u16_at(&page, 10)?);
                for i in 0..count {
                    let el = PAGE_HEADER + i * ELEMENT;
                    let child = u64_at(&page, el + 8)?;
                    self.node(child, depth + 1, out)?;
                }
                Ok(())
            }
            LEAF_PAGE => self.leaf(&page, depth, out),
            other => {
                bail!("bbolt page {id}: expected a branch or leaf page, found flags {other:#x}")
            }
        }
    }

    /// The items of a leaf page (`page` starts at its header; positions are relative to each
    /// element, as `leafPageElement.Key` computes them).
    fn leaf(&mut self, page: &[u8], depth: usize, out: &mut Vec<(Vec<u8>, Item)>) -> Result<()> {
        let count = usize::from(u16_at(page, 10)?);
        for i in 0..count {
            let el = PAGE_HEADER + i * ELEMENT;
            let flags = u32_at(page, el)?;
            let pos = usize::try_from(u32_at(page, el + 4)?)?;
            let ksize = usize::try_from(u32_at(page, el + 8)?)?;
            let vsize = usize::try_from(u32_at(page, el + 12)?)?;
            let k0 = el + pos;
            let key = page
                .get(k0..k0 + ksize)
                .context("bbolt leaf key past its page")?
                .to_vec();
            let value = page
                .get(k0 + ksize..k0 + ksize + vsize)
                .context("bbolt leaf value past its page")?;
            let item = if flags & BUCKET_LEAF == 0 {
                Item::Value(value.to_vec())
            } else {
                ensure!(
                    value.len() >= BUCKET_HEADER,
                    "bbolt bucket header truncated"
                );
                let root = u64_at(value, 0)?;
                let sequence = u64_at(value, 8)?;
                if root == 0 {
                    // Inline: a leaf page follows the header inside the value.
                    let mut items = Vec::new();
                    ensure!(depth + 1 < MAX_DEPTH, "bbolt tree deeper than {MAX_DEPTH}");
                    let inline = &value[BUCKET_HEADER..];
                    ensure!(
                        u16_at(inline, 8)? == LEAF_PAGE,
                        "bbolt inline bucket is not a leaf page"
                    );
                    self.leaf(inline, depth + 1, &mut items)?;
                    ensure!(
                        items.windows(2).all(|w| w[0].0 < w[1].0),
                        "bbolt bucket keys out of order"
                    );
                    Item::Bucket(Bucket {
                        sequence,
                        items,
                        stored: None,
                    })
                } else {
                    Item::Bucket(self.bucket_at(root, sequence, depth + 1)?)
                }
            };
            out.push((key, item));
        }
        Ok(())
    }
}

impl Db {
    /// Read a whole database file. Errors name what is wrong with it.
    pub fn parse(file: &[u8]) -> Result<Db> {
        ensure!(
            cfg!(target_endian = "little"),
            "bbolt files are read in the host's byte order; only little-endian hosts are supported"
        );
        ensure!(
            file.len() as u64 <= MAX_FILE,
            "bbolt file of {} bytes is above the {MAX_FILE}-byte bound",
            file.len()
        );
        let meta0 = parse_meta(file, 0);
        // Meta 1 sits one page in; its page size is meta 0's when that one is readable.
        let guess = meta0.as_ref().map_or(4096, |m| m.page_size as usize);
        let meta1 = parse_meta(file, guess);
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e.context("no valid bbolt meta page")),
        };
        let page_size = meta.page_size as usize;
        ensure!(
            (512..=1 << 20).contains(&page_size) && page_size.is_power_of_two(),
            "bbolt page size {page_size} is not a power of two between 512 and 1 MiB"
        );
        let in_file = file.len() as u64 / page_size as u64;
        ensure!(
            meta.pgid <= in_file,
            "bbolt file holds {in_file} pages, its meta names {}",
            meta.pgid
        );
        let mut reader = Reader {
            file,
            page_size,
            hwm: meta.pgid,
            seen: BTreeSet::new(),
            trail: Vec::new(),
        };
        let root = reader.bucket_at(meta.root, meta.root_sequence, 0)?;
        let mut free_pages = BTreeSet::new();
        if meta.freelist != NO_FREELIST {
            let page = reader.page(meta.freelist)?.to_vec();
            ensure!(
                u16_at(&page, 8)? == FREELIST_PAGE,
                "bbolt page {} is not a freelist page",
                meta.freelist
            );
            let mut count = usize::from(u16_at(&page, 10)?);
            let mut at = PAGE_HEADER;
            if count == 0xFFFF {
                count = usize::try_from(u64_at(&page, at)?)?;
                at += 8;
            }
            ensure!(
                count <= page.len() / 8,
                "bbolt freelist count {count} past its page"
            );
            for i in 0..count {
                let id = u64_at(&page, at + i * 8)?;
                ensure!(
                    (2..meta.pgid).contains(&id),
                    "bbolt freelist names page {id} outside 2..{}",
                    meta.pgid
                );
                free_pages.insert(id);
            }
        }
        ensure!(
            reader.seen.is_disjoint(&free_pages),
            "bbolt freelist names a page the tree uses"
        );
        Ok(Db {
            meta,
            root,
            live_pages: reader.seen,
            free_pages,
        })
    }

    /// The transaction id of the meta in use.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The writes that make `root` the database's content in one more transaction.
    pub fn commit(&self, root: &Bucket) -> Result<Commit> {
        ensure!(
            self.meta.freelist != NO_FREELIST,
            "the bbolt freelist is not persisted (NoFreelistSync): not written"
        );
        let page_size = self.meta.page_size as usize;
        let alloc = Allocator {
            free: self.free_pages.clone(),
            hwm: self.meta.pgid,
        };
        let mut writer = Writer {
            page_size,
            alloc,
            pages: Vec::new(),
            kept: BTreeSet::new(),
        };
        let root_id = writer.node(root, Some(&self.root))?;
        let Writer {
            mut alloc,
            mut pages,
            kept,
            ..
        } = writer;
        // The freelist: what was free and not reused, plus every page the old tree and
        // freelist used and the new one does not keep (no reader can hold them: the writer
        // has the file's exclusive lock). Its size is bounded before it is placed, as it may
        // take pages from the free list.
        let released: Vec<u64> = self.live_pages.difference(&kept).copied().collect();
        let bound = alloc.free.len() + released.len() + 1;
        let fl_pages = (PAGE_HEADER + 8 * (bound + 1)).div_ceil(page_size);
        let fl_id = alloc.take(fl_pages);
        let mut free: BTreeSet<u64> = alloc.free.clone();
        free.extend(released);
        ensure!(free.len() <= bound, "bbolt freelist grew past its bound");
        let mut fl = vec![0u8; fl_pages * page_size];
        put_header(&mut fl, fl_id, FREELIST_PAGE, 0, fl_pages)?;
        let mut at = PAGE_HEADER;
        if free.len() >= 0xFFFF {
            fl[10..12].copy_from_slice(&0xFFFFu16.to_le_bytes());
            fl[at..at + 8].copy_from_slice(&(free.len() as u64).to_le_bytes());
            at += 8;
        } else {
            fl[10..12].copy_from_slice(&u16::try_from(free.len())?.to_le_bytes());
        }
        for id in &free {
            fl[at..at + 8].copy_from_slice(&id.to_le_bytes());
            at += 8;
        }
        pages.push((fl_id * page_size as u64, fl));

        let txid = self.meta.txid + 1;
        let slot = txid % 2;
        let mut page = vec![0u8; page_size];
        put_header(&mut page, slot, META_PAGE, 0, 1)?;
        let m = &mut page[PAGE_HEADER..PAGE_HEADER + META_LEN];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&self.meta.page_size.to_le_bytes());
        m[12..16].copy_from_slice(&self.meta.flags.to_le_bytes());
        m[16..24].copy_from_slice(&root_id.to_le_bytes());
        m[24..32].copy_from_slice(&root.sequence.to_le_bytes());
        m[32..40].copy_from_slice(&fl_id.to_le_bytes());
        m[40..48].copy_from_slice(&alloc.hwm.to_le_bytes());
        m[48..56].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&m[..META_CHECKSUM_AT]);
        m[56..64].copy_from_slice(&sum.to_le_bytes());
        Ok(Commit {
            pages,
            meta: (slot * page_size as u64, page),
        })
    }
}

/// Pages for a commit: a contiguous run from the freelist (first fit, as bbolt's array
/// freelist allocates), else past the high-water mark.
struct Allocator {
    free: BTreeSet<u64>,
    hwm: u64,
}

impl Allocator {
    fn take(&mut self, n: usize) -> u64 {
        let n = n as u64;
        let mut run_start = None;
        let mut prev = None;
        for &id in &self.free {
            match prev {
                Some(p) if p + 1 == id => {}
                _ => run_start = Some(id),
            }
            prev = Some(id);
            let start = run_start.expect("set above");
            if id + 1 - start == n {
                for p in start..start + n {
                    self.free.remove(&p);
                }
                return start;
            }
        }
        let start = self.hwm;
        self.hwm += n;
        start
    }
}

fn put_header(page: &mut [u8], id: u64, flags: u16, count: u16, pages: usize) -> Result<()> {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    let overflow = u32::try_from(pages - 1).context("bbolt node of more than 2^32 pages")?;
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
    Ok(())
}

/// A bucket's items as one leaf page (header, elements, then keys and values), with the
/// values of sub-buckets already encoded.
fn leaf_bytes(items: &[(Vec<u8>, u32, Vec<u8>)], id: u64, page_size: usize) -> Result<Vec<u8>> {
    let count = u16::try_from(items.len()).context("bbolt leaf of more than 65535 keys")?;
    let data: usize = items.iter().map(|(k, _, v)| k.len() + v.len()).sum();
    let size = PAGE_HEADER + ELEMENT * items.len() + data;
    let pages = size.div_ceil(page_size).max(1);
    let mut page = vec![0u8; pages * page_size];
    put_header(&mut page, id, LEAF_PAGE, count, pages)?;
    let mut at = PAGE_HEADER + ELEMENT * items.len();
    for (i, (key, flags, value)) in items.iter().enumerate() {
        let el = PAGE_HEADER + i * ELEMENT;
        page[el..el + 4].copy_from_slice(&flags.to_le_bytes());
        page[el + 4..el + 8].copy_from_slice(&u32::try_from(at - el)?.to_le_bytes());
        page[el + 8..el + 12].copy_from_slice(&u32::try_from(key.len())?.to_le_bytes());
        page[el + 12..el + 16].copy_from_slice(&u32::try_from(value.len())?.to_le_bytes());
        page[at..at + key.len()].copy_from_slice(key);
        at += key.len();
        page[at..at + value.len()].copy_from_slice(value);
        at += value.len();
    }
    Ok(page)
}

/// Writes a tree into pages: an unchanged bucket that has pages of its own stays where it is
/// (its pages are `kept`), everything else goes to newly allocated pages.
struct Writer {
    page_size: usize,
    alloc: Allocator,
    pages: Vec<(u64, Vec<u8>)>,
    kept: BTreeSet<u64>,
}

impl Writer {
    /// Write `bucket` (its sub-buckets first), returning its root page id. `original`: the
    /// bucket at the same place in the file as read. A bucket bbolt would inline (`bucket.go`
    /// `inlineable`: no sub-buckets, its leaf under a quarter page) gets no page: `value`
    /// puts it inside its parent's value. The root bucket always has a page (the meta points
    /// at it). Leaves are filled up to a page and split as bbolt's `node.split` does, with
    /// branch pages above them; an item larger than a page alone takes overflow pages, as a
    /// node bbolt cannot split does.
    fn node(&mut self, bucket: &Bucket, original: Option<&Bucket>) -> Result<u64> {
        let page_size = self.page_size;
        let mut items = Vec::with_capacity(bucket.items.len());
        for (key, item) in &bucket.items {
            match item {
                Item::Value(v) => items.push((key.clone(), 0, v.clone())),
                Item::Bucket(b) => {
                    let was = original.and_then(|o| o.bucket(key));
                    items.push((key.clone(), BUCKET_LEAF, self.value(b, was)?));
                }
            }
        }
        let item_size = |(k, _, v): &(Vec<u8>, u32, Vec<u8>)| ELEMENT + k.len() + v.len();
        // Leaves: (first key, page id) each.
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        for chunk in chunks(&items, page_size, item_size) {
            let size = PAGE_HEADER + chunk.iter().map(item_size).sum::<usize>();
            let id = self.alloc.take(size.div_ceil(page_size).max(1));
            self.pages
                .push((id * page_size as u64, leaf_bytes(chunk, id, page_size)?));
            level.push((
                chunk.first().map(|(k, _, _)| k.clone()).unwrap_or_default(),
                id,
            ));
        }
        // Branches until one page holds the level.
        let entry_size = |(k, _): &(Vec<u8>, u64)| ELEMENT + k.len();
        while level.len() > 1 {
            let mut upper = Vec::new();
            for chunk in chunks(&level, page_size, entry_size) {
                let size = PAGE_HEADER + chunk.iter().map(entry_size).sum::<usize>();
                let n = size.div_ceil(page_size).max(1);
                let id = self.alloc.take(n);
                self.pages.push((
                    id * page_size as u64,
                    branch_bytes(chunk, id, n, page_size)?,
                ));
                upper.push((chunk[0].0.clone(), id));
            }
            level = upper;
        }
        Ok(level[0].1)
    }

    /// A sub-bucket's value: its header, then its leaf page when inlineable.
    fn value(&mut self, bucket: &Bucket, original: Option<&Bucket>) -> Result<Vec<u8>> {
        let header = |root: u64| {
            let mut v = Vec::with_capacity(BUCKET_HEADER);
            v.extend_from_slice(&root.to_le_bytes());
            v.extend_from_slice(&bucket.sequence.to_le_bytes());
            v
        };
        if let (Some(was), Some(stored)) = (original, &bucket.stored) {
            let same_place = was.stored.as_ref().map(|s| s.root) == Some(stored.root);
            if same_place && was == bucket {
                self.kept.extend(stored.pages.iter().copied());
                return Ok(header(stored.root));
            }
        }
        let has_buckets = bucket
            .items
            .iter()
            .any(|(_, i)| matches!(i, Item::Bucket(_)));
        let size = PAGE_HEADER
            + bucket
                .items
                .iter()
                .map(|(k, i)| {
                    ELEMENT
                        + k.len()
                        + match i {
                            Item::Value(v) => v.len(),
                            Item::Bucket(_) => 0,
                        }
                })
                .sum::<usize>();
        if has_buckets || size > self.page_size / 4 {
            let root = self.node(bucket, original)?;
            return Ok(header(root));
        }
        let items: Vec<(Vec<u8>, u32, Vec<u8>)> = bucket
            .items
            .iter()
            .filter_map(|(k, i)| match i {
                Item::Value(v) => Some((k.clone(), 0, v.clone())),
                Item::Bucket(_) => None,
            })
            .collect();
        let mut value = header(0);
        value.extend_from_slice(&leaf_bytes(&items, 0, self.page_size)?[..size]);
        Ok(value)
    }
}

fn branch_bytes(
    entries: &[(Vec<u8>, u64)],
    id: u64,
    pages: usize,
    page_size: usize,
) -> Result<Vec<u8>> {
    let mut page = vec![0u8; pages * page_size];
    put_header(
        &mut page,
        id,
        BRANCH_PAGE,
        u16::try_from(entries.len())?,
        pages,
    )?;
    let mut at = PAGE_HEADER + ELEMENT * entries.len();
    for (i, (key, child)) in entries.iter().enumerate() {
        let el = PAGE_HEADER + i * ELEMENT;
        page[el..el + 4].copy_from_slice(&u32::try_from(at - el)?.to_le_bytes());
        page[el + 4..el + 8].copy_from_slice(&u32::try_from(key.len())?.to_le_bytes());
        page[el + 8..el + 16].copy_from_slice(&child.to_le_bytes());
        page[at..at + key.len()].copy_from_slice(key);
        at += key.len();
    }
    Ok(page)
}

/// Consecutive runs of `items` that each fit a page (header included); an item that alone
/// does not fit is a run of its own (it takes overflow pages). At least one run, even empty.
fn chunks<T>(items: &[T], page_size: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = PAGE_HEADER;
    for (i, item) in items.iter().enumerate() {
        let s = size(item);
        if i > start && used + s > page_size {
            out.push(&items[start..i]);
            start = i;
            used = PAGE_HEADER;
        }
        used += s;
    }
    out.push(&items[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty database as bbolt's `init` lays it out (`db.go`): metas 0 and 1, freelist at
    /// page 2, an empty root leaf at page 3.
    pub(crate) fn empty_db(page_size: usize) -> Vec<u8> {
        let mut file = vec![0u8; page_size * 4];
        for i in 0..2u64 {
            let page = &mut file[i as usize * page_size..(i as usize + 1) * page_size];
            put_header(page, i, META_PAGE, 0, 1).unwrap();
            let m = &mut page[PAGE_HEADER..PAGE_HEADER + META_LEN];
            m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            m[4..8].copy_from_slice(&VERSION.to_le_bytes());
            m[8..12].copy_from_slice(&(page_size as u32).to_le_bytes());
            m[16..24].copy_from_slice(&3u64.to_le_bytes());
            m[32..40].copy_from_slice(&2u64.to_le_bytes());
            m[40..48].copy_from_slice(&4u64.to_le_bytes());
            m[48..56].copy_from_slice(&i.to_le_bytes());
            let sum = fnv1a64(&m[..META_CHECKSUM_AT]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        put_header(&mut file[2 * page_size..], 2, FREELIST_PAGE, 0, 1).unwrap();
        put_header(&mut file[3 * page_size..], 3, LEAF_PAGE, 0, 1).unwrap();
        file
    }

    pub(crate) fn apply(file: &mut Vec<u8>, commit: &Commit) {
        for (offset, bytes) in commit.pages.iter().chain(std::iter::once(&commit.meta)) {
            let end = *offset as usize + bytes.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            file[*offset as usize..end].copy_from_slice(bytes);
        }
    }

    fn commit_to(file: &mut Vec<u8>, tree: &Bucket) {
        let commit = Db::parse(file).unwrap().commit(tree).unwrap();
        apply(file, &commit);
    }

    fn value(v: &str) -> Item {
        Item::Value(v.as_bytes().to_vec())
    }

    fn sample(addresses: usize) -> Bucket {
        let subnet = Bucket {
            stored: None,
            sequence: 0,
            items: (0..addresses)
                .map(|i| {
                    (
                        vec![10, 89, (i / 250) as u8, (i % 250 + 2) as u8],
                        value(&"c".repeat(64)),
                    )
                })
                .collect(),
        };
        let ids = Bucket {
            stored: None,
            sequence: 0,
            items: vec![(b"abc".to_vec(), value("[\"10.89.0.2\"]"))],
        };
        let net = Bucket {
            stored: None,
            sequence: 0,
            items: vec![
                (b"10.89.0.0/24".to_vec(), Item::Bucket(subnet)),
                (b"ids".to_vec(), Item::Bucket(ids)),
            ],
        };
        Bucket {
            stored: None,
            sequence: 7,
            items: vec![(b"archy".to_vec(), Item::Bucket(net))],
        }
    }

    #[test]
    fn an_empty_database_reads_as_an_empty_root() {
        let db = Db::parse(&empty_db(4096)).unwrap();
        assert_eq!(db.root, Bucket::default());
        assert_eq!(db.txid(), 1);
    }

    #[test]
    fn a_commit_round_trips_inline_paged_and_overflowing_buckets() {
        for addresses in [1, 30, 600, 20_000] {
            let mut file = empty_db(4096);
            let db = Db::parse(&file).unwrap();
            let tree = sample(addresses);
            let commit = db.commit(&tree).unwrap();
            apply(&mut file, &commit);
            let again = Db::parse(&file).unwrap();
            assert_eq!(again.root, tree, "{addresses} addresses");
            assert_eq!(again.txid(), 2);
            // A second commit reuses freed pages instead of growing without bound.
            let commit = again.commit(&tree).unwrap();
            apply(&mut file, &commit);
            let len = file.len();
            for _ in 0..5 {
                let db = Db::parse(&file).unwrap();
                apply(&mut file, &db.commit(&tree).unwrap());
            }
            assert_eq!(Db::parse(&file).unwrap().root, tree);
            assert!(
                file.len() <= len + 4096 * 4,
                "file grew from {len} to {}",
                file.len()
            );
        }
    }

    #[test]
    fn a_commit_never_writes_a_page_the_current_meta_reaches() {
        let mut file = empty_db(4096);
        commit_to(&mut file, &sample(600));
        let db = Db::parse(&file).unwrap();
        let commit = db.commit(&sample(3)).unwrap();
        for (offset, bytes) in &commit.pages {
            let first = offset / 4096;
            let last = first + bytes.len() as u64 / 4096;
            for p in first..last {
                assert!(!db.live_pages.contains(&p), "page {p} is live");
                assert!(p >= 2, "page {p} is a meta page");
            }
        }
        // The meta goes to the other slot, so a torn write leaves the current one.
        assert_eq!(commit.meta.0, (db.txid() + 1) % 2 * 4096);
    }

    #[test]
    fn a_commit_rewrites_only_the_buckets_that_changed() {
        let mut tree = sample(600);
        for n in 0..20u8 {
            let mut net = tree.bucket(b"archy").unwrap().clone();
            net.sequence = u64::from(n);
            tree.items
                .push((vec![b'n', b'0' + n / 10, b'0' + n % 10], Item::Bucket(net)));
        }
        let mut file = empty_db(4096);
        commit_to(&mut file, &tree);
        let db = Db::parse(&file).unwrap();
        let mut changed = db.root.clone();
        let net = changed.bucket_mut(b"n07").unwrap();
        let subnet = net.bucket_mut(b"10.89.0.0/24").unwrap();
        assert!(subnet.delete_value(&[10, 89, 0, 2]));
        let commit = db.commit(&changed).unwrap();
        // The changed network's subnet (a few leaves and a branch), the network, the root and
        // the freelist — not the 20 other networks' hundreds of pages.
        let written: usize = commit.pages.iter().map(|(_, p)| p.len() / 4096).sum();
        assert!(written < 30, "{written} pages written");
        apply(&mut file, &commit);
        let after = Db::parse(&file).unwrap();
        assert_eq!(after.root, changed);
        assert_ne!(after.root, tree);
    }

    #[test]
    fn a_torn_meta_write_leaves_the_database_as_it_was() {
        let mut file = empty_db(4096);
        commit_to(&mut file, &sample(2));
        let before = Db::parse(&file).unwrap();
        let mut commit = before.commit(&sample(1)).unwrap();
        // Pages written, then the meta half written (its checksum fails).
        let meta = commit.meta.1.clone();
        commit.meta.1 = meta[..PAGE_HEADER + 30].to_vec();
        apply(&mut file, &commit);
        let after = Db::parse(&file).unwrap();
        assert_eq!(after.root, before.root);
        assert_eq!(after.txid(), before.txid());
    }

    #[test]
    fn crafted_files_are_errors_not_panics() {
        let good = {
            let mut file = empty_db(4096);
            commit_to(&mut file, &sample(40));
            file
        };
        assert!(Db::parse(&[]).is_err());
        assert!(Db::parse(&good[..4096 * 3]).is_err());
        // Flip every byte past the metas in turn (a cheap fuzz): never a panic.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut bad = good.clone();
            let at = 8192 + (rng as usize % (bad.len() - 8192));
            bad[at] = (rng >> 32) as u8;
            let _ = Db::parse(&bad);
        }
        // A page that points at itself is caught, not followed for ever.
        let mut looped = empty_db(4096);
        let root = 3 * 4096;
        looped[root + 8..root + 10].copy_from_slice(&BRANCH_PAGE.to_le_bytes());
        looped[root + 10..root + 12].copy_from_slice(&1u16.to_le_bytes());
        looped[root + 16 + 8..root + 16 + 16].copy_from_slice(&3u64.to_le_bytes());
        let err = Db::parse(&looped).unwrap_err();
        assert!(format!("{err:#}").contains("reached twice"), "{err:#}");
    }

    #[test]
    fn the_checksum_is_go_fnv1a64() {
        // hash/fnv New64a of "a" and of "" (Go's test vectors, hash/fnv/fnv_test.go).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
