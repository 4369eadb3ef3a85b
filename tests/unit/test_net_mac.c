/* Derived MACs: stable, unicast and locally administered, different per
 * VM and per NIC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/mac.h"

static void test_stable_and_well_formed(void **state)
{
    uint8_t a[6], b[6];
    net_derive_mac("vm1", "net0", a);
    net_derive_mac("vm1", "net0", b);
    assert_memory_equal(a, b, 6);
    assert_int_equal(a[0] & 0x01, 0);    /* unicast */
    assert_int_equal(a[0] & 0x02, 0x02); /* locally administered */
    /* A fixed value: the derivation must not change between releases. */
    static const uint8_t known[6] = {0xaa, 0xe3, 0x89, 0xe6, 0x5a, 0x28};
    assert_memory_equal(a, known, 6);
}

static void test_differs_by_vm_and_nic(void **state)
{
    uint8_t base[6], other_vm[6], other_nic[6], split[6], joined[6];
    net_derive_mac("vm1", "net0", base);
    net_derive_mac("vm2", "net0", other_vm);
    net_derive_mac("vm1", "net1", other_nic);
    assert_memory_not_equal(base, other_vm, 6);
    assert_memory_not_equal(base, other_nic, 6);
    net_derive_mac("ab", "c", split);
    net_derive_mac("a", "bc", joined);
    assert_memory_not_equal(split, joined, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stable_and_well_formed),
        cmocka_unit_test(test_differs_by_vm_and_nic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
