// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CommonBase} from "./Base.sol";

/// @notice Base for scripts (forge runs only contracts that say they are one).
abstract contract Script is CommonBase {
    bool public IS_SCRIPT = true;
}
