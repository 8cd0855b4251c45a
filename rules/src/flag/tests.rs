use super::*;

#[test]
fn a_flag_set_holds_exactly_the_flags_that_are_on() {
    assert!(Flag::ALL.len() <= 16, "a FlagSet holds 16 flags");
    assert_eq!(Flag::ALL.len(), FLAGS.len());
    let set = FlagSet::from_fn(|f| matches!(f, Flag::Firewall | Flag::PiiScanning));
    for f in Flag::ALL {
        assert_eq!(set.contains(f), matches!(f, Flag::Firewall | Flag::PiiScanning), "{}", f.name());
    }
    assert!(Flag::ALL.iter().all(|f| !FlagSet::default().contains(*f)));
    assert!(Flag::ALL.iter().all(|f| FlagSet::from_fn(|_| true).contains(*f)));
}
