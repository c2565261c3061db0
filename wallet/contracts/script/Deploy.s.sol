// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Script} from "forge-std/Script.sol";

import {AdapterRegistry} from "../src/AdapterRegistry.sol";
import {RewardSplitter} from "../src/RewardSplitter.sol";

/// @notice Deploys the registry, then the splitter that pays by it.
/// `forge script script/Deploy.s.sol --offline --rpc-url <node> --broadcast --private-key <key>`;
/// the studio deploys the same bytecode from assets/contracts/ itself.
contract Deploy is Script {
    function run() external returns (AdapterRegistry registry, RewardSplitter splitter) {
        vm.startBroadcast();
        registry = new AdapterRegistry();
        splitter = new RewardSplitter(registry);
        vm.stopBroadcast();
    }
}
