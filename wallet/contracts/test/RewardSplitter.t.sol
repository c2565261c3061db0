// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {CommonBase} from "forge-std/Base.sol";
import {Fixtures} from "./utils/Fixtures.sol";
import {IAdapterRegistry} from "../src/IAdapterRegistry.sol";
import {RewardSplitter} from "../src/RewardSplitter.sol";

/// @notice A contributor contract that tries to withdraw again while being paid.
contract ReentrantContributor {
    RewardSplitter public immutable splitter;
    uint256 public reentries;

    constructor(RewardSplitter splitter_) {
        splitter = splitter_;
    }

    function attack() external {
        splitter.withdraw();
    }

    receive() external payable {
        ++reentries;
        splitter.withdraw(); // reverts, and so does this receive, and so the withdrawal
    }
}

/// @notice A contributor contract that swallows the failed re-entries, so its own withdrawal can
/// go through: it must get exactly what it was owed, once.
contract SwallowingContributor {
    RewardSplitter public immutable splitter;
    bytes32 public immutable adapter;
    bytes public withdrawError;
    bytes public withdrawToError;
    bytes public payError;

    constructor(RewardSplitter splitter_, bytes32 adapter_) {
        splitter = splitter_;
        adapter = adapter_;
    }

    function attack() external {
        splitter.withdraw();
    }

    receive() external payable {
        if (msg.sender != address(splitter)) return;
        try splitter.withdraw() {}
        catch (bytes memory err) {
            withdrawError = err;
        }
        try splitter.withdrawTo(payable(address(this))) {}
        catch (bytes memory err) {
            withdrawToError = err;
        }
        try splitter.pay{value: 1}(adapter) {}
        catch (bytes memory err) {
            payError = err;
        }
    }
}

/// @notice Random payments and withdrawals for the invariant test.
contract SplitterHandler is CommonBase {
    RewardSplitter public immutable splitter;
    bytes32[] public adapters;
    address[] public actors;
    uint256 public ghostPaid;
    uint256 public ghostWithdrawn;
    uint256 public payments;
    uint256 public withdrawals;

    constructor(RewardSplitter splitter_, bytes32[] memory adapters_, address[] memory actors_) {
        splitter = splitter_;
        adapters = adapters_;
        actors = actors_;
    }

    function pay(uint256 which, uint256 amount, uint256 payerSeed) external {
        amount = bound(amount, 1, 1_000_000 ether);
        address payer = address(uint160(uint256(keccak256(abi.encode("payer", payerSeed % 4)))));
        vm.deal(payer, amount);
        vm.prank(payer);
        splitter.pay{value: amount}(adapters[which % adapters.length]);
        ghostPaid += amount;
        ++payments;
    }

    function withdraw(uint256 who) external {
        address a = actors[who % actors.length];
        uint256 owed = splitter.owed(a);
        if (owed == 0) return;
        uint256 before = a.balance;
        vm.prank(a);
        splitter.withdraw();
        require(a.balance == before + owed, "withdrawal moved exactly what was owed");
        ghostWithdrawn += owed;
        ++withdrawals;
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function adapterCount() external view returns (uint256) {
        return adapters.length;
    }
}

contract RewardSplitterTest is Fixtures {
    RewardSplitter internal splitter;
    SplitterHandler internal handler;

    bytes32 internal constant A = keccak256("adapter A");
    bytes32 internal constant B = keccak256("adapter B");
    bytes32 internal constant C = keccak256("adapter C");
    bytes32 internal constant THREE = keccak256("adapter three-way");

    address[] internal actors;

    function setUp() public {
        _deployRegistry();
        splitter = new RewardSplitter(registry);
        vm.label(address(splitter), "RewardSplitter");

        (address[] memory c, uint16[] memory s) = _threeWay();
        _register(_registration(THREE, publisher, c, s));

        // Three adapters over six actors, overlapping, for the invariant test.
        actors = _contributors(6, 42);
        _register(_registration(A, publisher, _slice(actors, 0, 3), _shares(3, 1)));
        _register(_registration(B, publisher, _slice(actors, 1, 6), _shares(5, 2)));
        _register(_registration(C, publisher, _slice(actors, 3, 4), _shares(1, 3)));
        bytes32[] memory adapters = new bytes32[](3);
        (adapters[0], adapters[1], adapters[2]) = (A, B, C);
        handler = new SplitterHandler(splitter, adapters, actors);
        targetContract(address(handler));
    }

    // ---------------------------------------------------------------- paying

    function test_Pay_SplitsExactlyWithTheRemainderToTheLargestShare() public {
        // 10 001 wei at 50.00 / 33.33 / 16.67 %: floors 5000 + 3333 + 1667 = 10 000, and the
        // 1 wei left goes to the 50 % contributor.
        _payAndExpect(THREE, 10_001, [uint256(5001), 3333, 1667]);
        // 1 wei: every floor is 0; the wei goes to the largest share.
        _payAndExpect(THREE, 1, [uint256(1), 0, 0]);
        // 1 ether divides evenly.
        _payAndExpect(THREE, 1 ether, [uint256(0.5 ether), 0.3333 ether, 0.1667 ether]);
    }

    function test_Pay_RemainderOnATieGoesToTheFirst() public {
        address[] memory c = _contributors(3, 9);
        uint16[] memory s = new uint16[](3);
        (s[0], s[1], s[2]) = (3333, 3334, 3333);
        bytes32 m = _register(_registration(keccak256("tie-free"), publisher, c, s));
        _payAndExpect(m, 2, [uint256(0), 2, 0]);

        (s[0], s[1], s[2]) = (4000, 2000, 4000);
        m = _register(_registration(keccak256("tie"), publisher, c, s));
        // 7 wei: floors 2, 1, 2 (5), remainder 2 to the first of the two 40 % shares.
        _payAndExpect(m, 7, [uint256(4), 1, 2]);
    }

    function test_Pay_EmitsPaidAndCredited() public {
        (address[] memory c,) = _threeWay();
        address payer = makeAddr("payer");
        vm.deal(payer, 1 ether);
        vm.expectEmit(true, true, true, true, address(splitter));
        emit RewardSplitter.Paid(THREE, payer, 10_001);
        vm.expectEmit(true, true, true, true, address(splitter));
        emit RewardSplitter.Credited(THREE, c[0], 5001);
        vm.expectEmit(true, true, true, true, address(splitter));
        emit RewardSplitter.Credited(THREE, c[1], 3333);
        vm.expectEmit(true, true, true, true, address(splitter));
        emit RewardSplitter.Credited(THREE, c[2], 1667);
        vm.prank(payer);
        splitter.pay{value: 10_001}(THREE);
    }

    function testFuzz_Pay_ExactSplit(uint256 n, uint256 seed, uint256 amount) public {
        n = bound(n, 1, 24);
        amount = bound(amount, 1, 1e30);
        address[] memory c = _contributors(n, seed);
        uint16[] memory s = _shares(n, seed);
        bytes32 m = _register(_registration(keccak256(abi.encode(seed)), publisher, c, s));
        (, uint256[] memory preview) = splitter.preview(m, amount);

        vm.deal(address(this), amount);
        splitter.pay{value: amount}(m);

        uint256 largest;
        for (uint256 i; i < n; ++i) {
            if (s[i] > s[largest]) largest = i;
        }
        uint256 sum;
        for (uint256 i; i < n; ++i) {
            uint256 credit = splitter.owed(c[i]);
            uint256 floor = amount * s[i] / 10_000;
            sum += credit;
            vm.assertEq(credit, preview[i], "preview equals the credit");
            if (i == largest) {
                vm.assertGe(credit, floor, "largest share: at least its floor");
                vm.assertLt(credit - floor, n, "largest share: fewer extra wei than contributors");
            } else {
                vm.assertEq(credit, floor, "other shares: exactly their floor");
            }
        }
        vm.assertEq(sum, amount, "credits sum to the payment exactly");
        vm.assertEq(splitter.paidInto(m), amount, "paidInto");
        vm.assertEq(address(splitter).balance, amount, "held");
    }

    function test_Pay_SeveralAdaptersAccumulate() public {
        // actors[1] and actors[2] are contributors to both A and B.
        (, uint256[] memory fromA) = splitter.preview(A, 3 ether + 7);
        (, uint256[] memory fromB) = splitter.preview(B, 5 ether + 11);
        splitter.pay{value: 3 ether + 7}(A);
        splitter.pay{value: 5 ether + 11}(B);
        vm.assertEq(splitter.owed(actors[0]), fromA[0], "A only");
        vm.assertEq(splitter.owed(actors[1]), fromA[1] + fromB[0], "A and B");
        vm.assertEq(splitter.owed(actors[2]), fromA[2] + fromB[1], "A and B");
        vm.assertEq(splitter.totalPaid(), 8 ether + 18, "totalPaid");
        vm.assertEq(_sumOwed(), 8 ether + 18, "all of it owed");
    }

    function test_Pay_MaxContributorsWithinGas() public {
        uint256 n = registry.MAX_CONTRIBUTORS();
        bytes32 m = _register(_registration(keccak256("many"), publisher, _contributors(n, 5), _shares(n, 5)));
        vm.deal(address(this), 1 ether);
        uint256 before = gasleft();
        splitter.pay{value: 1 ether}(m);
        uint256 used = before - gasleft();
        vm.assertLt(used, 15_000_000, "paying the most contributors fits in half a 30M block");
    }

    function test_RevertWhen_PayingAnUnknownAdapter() public {
        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.UnknownAdapter.selector, keccak256("nobody")));
        splitter.pay{value: 1 ether}(keccak256("nobody"));
        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.UnknownAdapter.selector, bytes32(0)));
        splitter.pay{value: 1 ether}(bytes32(0));
    }

    function testFuzz_RevertWhen_PayingAnUnknownAdapter(bytes32 m, uint96 amount) public {
        vm.assume(m != A && m != B && m != C && m != THREE);
        vm.assume(amount > 0);
        vm.deal(address(this), amount);
        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.UnknownAdapter.selector, m));
        splitter.pay{value: amount}(m);
    }

    function test_RevertWhen_PayingNothing() public {
        vm.expectRevert(RewardSplitter.ZeroPayment.selector);
        splitter.pay(THREE);
    }

    function test_RevertWhen_EtherSentWithoutAnAdapter() public {
        (bool ok,) = address(splitter).call{value: 1 ether}("");
        vm.assertFalse(ok, "plain transfers are refused");
    }

    function test_RevertWhen_RegistryIsZero() public {
        vm.expectRevert(RewardSplitter.ZeroRegistry.selector);
        new RewardSplitter(IAdapterRegistry(address(0)));
    }

    // ---------------------------------------------------------------- withdrawing

    function test_Withdraw_MovesExactlyTheBalance() public {
        (address[] memory c,) = _threeWay();
        splitter.pay{value: 10_001}(THREE);
        splitter.pay{value: 3}(THREE);
        uint256 owed0 = splitter.owed(c[0]);
        vm.assertEq(owed0, 5001 + 3, "owed after two payments");
        uint256 held = address(splitter).balance;

        vm.expectEmit(true, true, true, true, address(splitter));
        emit RewardSplitter.Withdrawn(c[0], c[0], owed0);
        vm.prank(c[0]);
        uint256 got = splitter.withdraw();

        vm.assertEq(got, owed0, "returned amount");
        vm.assertEq(c[0].balance, owed0, "received exactly what was owed");
        vm.assertEq(address(splitter).balance, held - owed0, "splitter paid out exactly that");
        vm.assertEq(splitter.owed(c[0]), 0, "nothing left owed");
        vm.assertEq(splitter.owed(c[1]), 3333, "others untouched");
        vm.assertEq(splitter.totalWithdrawn(), owed0, "totalWithdrawn");
        vm.assertEq(_sumOwed3(c) + splitter.totalWithdrawn(), splitter.totalPaid(), "owed + withdrawn == paid");

        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.NothingOwed.selector, c[0]));
        vm.prank(c[0]);
        splitter.withdraw();
    }

    function testFuzz_Withdraw_AfterPayments(uint256 seed, uint8 count) public {
        count = uint8(bound(count, 1, 12));
        uint256 paid;
        for (uint256 k; k < count; ++k) {
            uint256 amount = bound(uint256(keccak256(abi.encode(seed, k))), 1, 1_000 ether);
            bytes32 m = [A, B, C][k % 3];
            vm.deal(address(this), amount);
            splitter.pay{value: amount}(m);
            paid += amount;
        }
        for (uint256 i; i < actors.length; ++i) {
            uint256 owed = splitter.owed(actors[i]);
            if ((seed >> i) & 1 == 0 || owed == 0) continue;
            vm.prank(actors[i]);
            splitter.withdraw();
            vm.assertEq(actors[i].balance, owed, "received exactly what was owed");
        }
        vm.assertEq(_sumOwed() + splitter.totalWithdrawn(), paid, "owed + withdrawn == paid");
        vm.assertEq(address(splitter).balance, paid - splitter.totalWithdrawn(), "balance == paid - withdrawn");
    }

    function test_WithdrawTo() public {
        (address[] memory c,) = _threeWay();
        splitter.pay{value: 10_000}(THREE);
        address cold = makeAddr("cold wallet");
        vm.prank(c[1]);
        splitter.withdrawTo(payable(cold));
        vm.assertEq(cold.balance, 3333, "sent to the given address");
        vm.assertEq(c[1].balance, 0, "not to the caller");
        vm.assertEq(splitter.owed(c[1]), 0, "owed cleared");

        vm.expectRevert(RewardSplitter.ZeroRecipient.selector);
        vm.prank(c[2]);
        splitter.withdrawTo(payable(address(0)));
    }

    function test_RevertWhen_NothingOwed() public {
        address stranger = makeAddr("stranger");
        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.NothingOwed.selector, stranger));
        vm.prank(stranger);
        splitter.withdraw();
    }

    // ---------------------------------------------------------------- reentrancy

    function test_Reentrancy_AttackerWithdrawalFailsWhole() public {
        ReentrantContributor attacker = new ReentrantContributor(splitter);
        bytes32 m = _registerWith(address(attacker), keccak256("attacked"));
        splitter.pay{value: 1 ether}(m);
        uint256 owed = splitter.owed(address(attacker));
        vm.assertEq(owed, 0.5 ether, "attacker is owed half");
        uint256 held = address(splitter).balance;

        vm.expectRevert(abi.encodeWithSelector(RewardSplitter.TransferFailed.selector, address(attacker), owed));
        attacker.attack();

        vm.assertEq(splitter.owed(address(attacker)), owed, "still owed: nothing happened");
        vm.assertEq(address(splitter).balance, held, "nothing left the splitter");
        vm.assertEq(address(attacker).balance, 0, "attacker got nothing");
        vm.assertEq(splitter.totalWithdrawn(), 0, "nothing withdrawn");
    }

    function test_Reentrancy_AttackerGetsExactlyItsShareOnce() public {
        SwallowingContributor attacker = new SwallowingContributor(splitter, keccak256("attacked"));
        bytes32 m = _registerWith(address(attacker), keccak256("attacked"));
        splitter.pay{value: 1 ether}(m);
        splitter.pay{value: 1 ether}(THREE); // other money in the splitter that must stay put
        uint256 owed = splitter.owed(address(attacker));
        uint256 held = address(splitter).balance;

        attacker.attack();

        bytes memory reentrant = abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        vm.assertEq(attacker.withdrawError(), reentrant, "re-entering withdraw() is refused");
        vm.assertEq(attacker.withdrawToError(), reentrant, "re-entering withdrawTo() is refused");
        vm.assertEq(attacker.payError(), reentrant, "re-entering pay() is refused");
        vm.assertEq(address(attacker).balance, owed, "attacker got exactly its share, once");
        vm.assertEq(address(splitter).balance, held - owed, "the rest stays");
        vm.assertEq(splitter.owed(address(attacker)), 0, "attacker owed nothing more");
    }

    // ---------------------------------------------------------------- invariant

    /// Whatever sequence of payments and withdrawals: every wei paid is owed or withdrawn,
    /// and the splitter holds exactly what is owed.
    function invariant_OwedPlusWithdrawnEqualsPaid() public view {
        uint256 owed = _sumOwed();
        vm.assertEq(splitter.totalPaid(), handler.ghostPaid(), "totalPaid counts every payment");
        vm.assertEq(splitter.totalWithdrawn(), handler.ghostWithdrawn(), "totalWithdrawn counts every withdrawal");
        vm.assertEq(owed + splitter.totalWithdrawn(), splitter.totalPaid(), "sum owed + withdrawn == paid");
        vm.assertEq(address(splitter).balance, owed, "held == owed");
        vm.assertEq(
            splitter.paidInto(A) + splitter.paidInto(B) + splitter.paidInto(C), splitter.totalPaid(), "per adapter"
        );
    }

    // ---------------------------------------------------------------- helpers

    function _payAndExpect(bytes32 m, uint256 amount, uint256[3] memory expected) internal {
        (address[] memory c,) = registry.sharesOf(m);
        uint256[3] memory before;
        for (uint256 i; i < 3; ++i) {
            before[i] = splitter.owed(c[i]);
        }
        splitter.pay{value: amount}(m);
        for (uint256 i; i < 3; ++i) {
            vm.assertEq(splitter.owed(c[i]) - before[i], expected[i], "credit");
        }
    }

    /// Registers `m` with `special` at 50 % and an EOA at 50 %, in ascending order.
    function _registerWith(address special, bytes32 m) internal returns (bytes32) {
        address other = makeAddr("honest contributor");
        address[] memory c = new address[](2);
        (c[0], c[1]) = special < other ? (special, other) : (other, special);
        uint16[] memory s = new uint16[](2);
        (s[0], s[1]) = (5000, 5000);
        return _register(_registration(m, publisher, c, s));
    }

    function _slice(address[] memory a, uint256 from, uint256 to) internal pure returns (address[] memory out) {
        out = new address[](to - from);
        for (uint256 i; i < out.length; ++i) {
            out[i] = a[from + i];
        }
    }

    function _sumOwed() internal view returns (uint256 total) {
        for (uint256 i; i < actors.length; ++i) {
            total += splitter.owed(actors[i]);
        }
    }

    function _sumOwed3(address[] memory c) internal view returns (uint256 total) {
        for (uint256 i; i < c.length; ++i) {
            total += splitter.owed(c[i]);
        }
    }

    receive() external payable {}
}
