// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {Deploy} from "../script/Deploy.s.sol";
import {AdapterRegistry} from "../src/AdapterRegistry.sol";
import {RewardSplitter} from "../src/RewardSplitter.sol";

contract DeployTest is Test {
    function test_Deploy_WiresTheSplitterToTheRegistry() public {
        (AdapterRegistry registry, RewardSplitter splitter) = new Deploy().run();
        vm.assertEq(address(splitter.registry()), address(registry), "splitter pays by the registry");
        vm.assertEq(registry.TOTAL_SHARES(), splitter.TOTAL_SHARES(), "same basis");
        vm.assertTrue(address(registry).code.length > 0 && address(splitter).code.length > 0, "both deployed");
    }
}
