// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CommonBase} from "./Base.sol";

/// @notice Base for tests, after forge-std's `Test`: `vm`, `bound`, `makeAddr`, and the
/// invariant-target hook that forge reads.
abstract contract Test is CommonBase {
    bool public IS_TEST = true;

    address[] private _targetContracts;

    /// @notice A labelled address derived from `name`.
    function makeAddr(string memory name) internal returns (address a) {
        a = vm.addr(uint256(keccak256(bytes(name))));
        vm.label(a, name);
    }

    /// @notice Restricts invariant fuzzing to `target` (forge calls `targetContracts()`).
    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }
}
