// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm, VM_ADDRESS} from "./Vm.sol";

/// @notice The cheatcodes and `bound`, for tests, handlers and scripts.
abstract contract CommonBase {
    Vm internal constant vm = Vm(VM_ADDRESS);

    /// @notice `x` mapped into [min, max] (inclusive), uniformly enough for fuzzing; values
    /// already inside are kept, so that forge's dictionary values stay meaningful.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: max < min");
        if (x >= min && x <= max) return x;
        uint256 size = max - min;
        if (size == type(uint256).max) return x;
        return min + x % (size + 1);
    }
}
