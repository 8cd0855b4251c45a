use super::*;

/// The store's script, in Rust.
#[derive(Default)]
struct Store(HashMap<String, (u64, u64)>);

impl Store {
    fn sync(&mut self, f: &FleetShares, ms: u64, n: u64) {
        f.set_instances(n);
        f.set_connected(true);
        let items = f.plan(ms);
        let given: Vec<Option<u64>> = items
            .iter()
            .map(|i| {
                let (c, r) = self.0.entry(i.store_key()).or_default();
                *c += i.charge;
                *r += u64::from(i.first);
                let held = n.saturating_sub(*r) * i.held_share;
                let rem = i.limit.saturating_sub(*c + held);
                let g = fair_part(rem, n, i.headroom);
                *c += g;
                Some(g)
            })
            .collect();
        f.apply(&items, &given);
    }
}

const K: FleetKey = [7; 16];

fn admitted(f: &FleetShares, tries: u64, ms: u64) -> u64 {
    (0..tries).filter(|_| f.take(K, 10, 1, ms).is_ok()).count() as u64
}

#[test]
fn two_instances_balanced_never_pass_the_budget() {
    let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
    let mut store = Store::default();
    store.sync(&a, 0, 2);
    store.sync(&b, 0, 2);
    for window in 1..50u64 {
        let mut total = 0;
        // 10 sync rounds per window, each instance offered 5 requests between syncs; the
        // order of the syncs alternates.
        for round in 0..10 {
            let ms = window * 1000 + round * 100 + 1;
            total += admitted(&a, 5, ms);
            total += admitted(&b, 5, ms);
            let ms = ms + 50;
            if (round + window) % 2 == 0 {
                store.sync(&a, ms, 2);
                store.sync(&b, ms, 2);
            } else {
                store.sync(&b, ms, 2);
                store.sync(&a, ms, 2);
            }
        }
        assert!((9..=10).contains(&total), "window {window}: {total}");
    }
}

#[test]
fn traffic_moving_mid_window_is_bounded_by_one_request() {
    let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
    let mut store = Store::default();
    store.sync(&a, 0, 2);
    store.sync(&b, 0, 2);
    let mut total = 0;
    for round in 0..7 {
        total += admitted(&a, 5, 1000 + round * 100 + 1);
        store.sync(&a, 1000 + round * 100 + 50, 2);
    }
    assert_eq!(total, 10, "one busy instance gets the budget once the grace is over");
    total += admitted(&b, 20, 1800);
    store.sync(&b, 1850, 2);
    total += admitted(&b, 20, 1900);
    assert_eq!(total, 11, "worst case: the count + 1 per late instance");
}

#[test]
fn one_busy_instance_gets_the_whole_budget_after_the_grace() {
    let (a, b) = (FleetShares::new(Fallback::Share), FleetShares::new(Fallback::Share));
    let mut store = Store::default();
    store.sync(&a, 0, 2);
    store.sync(&b, 0, 2);
    let mut total = 0;
    let mut at_grace = 0;
    for round in 0..10 {
        total += admitted(&a, 100, 1000 + round * 100 + 1);
        if round == 2 {
            at_grace = total;
        }
        store.sync(&a, 1000 + round * 100 + 50, 2);
    }
    assert_eq!(at_grace, 5, "within the grace: its share");
    assert_eq!(total, 10);
}

#[test]
fn unreachable_store_share_or_local() {
    let s = FleetShares::new(Fallback::Share);
    s.set_instances(2);
    assert_eq!(admitted(&s, 100, 5000), 5, "a new window: the share");
    assert_eq!(admitted(&s, 100, 5100), 0);
    assert_eq!(s.take(K, 10, 1, 5100), Err(1));
    assert_eq!(admitted(&s, 100, 6000), 5);
    let l = FleetShares::new(Fallback::Local);
    l.set_instances(2);
    assert_eq!(admitted(&l, 100, 5000), 100, "local: the fleet budget is not applied");
    l.set_connected(true);
    assert_eq!(admitted(&l, 100, 6000), 5);
}

#[test]
fn refused_keys_keep_what_they_have_and_refunds_give_back() {
    let s = FleetShares::new(Fallback::Share);
    s.set_instances(2);
    s.set_connected(true);
    assert_eq!(admitted(&s, 3, 1000), 3);
    let items = s.plan(1050);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].charge, items[0].headroom, items[0].first, items[0].held_share), (3, 0, true, 5));
    s.apply(&items, &[None]);
    assert_eq!(admitted(&s, 3, 1100), 0, "a key the store refused admits nothing more");
    s.refund(K, 1100);
    assert_eq!(admitted(&s, 3, 1100), 1);
    assert_eq!(s.plan(1300)[0].held_share, 0, "past the grace");
    assert!(s.plan(3000).is_empty());
    assert!(s.is_empty(), "past windows are forgotten");
}

#[test]
fn small_counts_and_retry_after() {
    assert_eq!(first_share(1, 3), 1);
    assert_eq!(first_share(10, 0), 10);
    assert_eq!(fair_part(5, 2, 0), 3);
    assert_eq!(fair_part(5, 2, 4), 0);
    assert_eq!(fair_part(1, 4, 0), 1);
    let s = FleetShares::new(Fallback::Share);
    s.set_connected(true);
    assert_eq!((0..200).filter(|_| s.take(K, 100, 60, 120_100).is_ok()).count(), 100);
    assert_eq!(s.take(K, 100, 60, 125_000), Err(55), "until the minute ends");
    assert_eq!(s.take([9; 16], 100, 60, 125_000), Ok(()), "a key first seen past the grace: 1");
    assert_eq!(s.take([9; 16], 100, 60, 125_000), Err(55));
}
