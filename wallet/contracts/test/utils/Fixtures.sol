// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";
import {AdapterRegistry} from "../../src/AdapterRegistry.sol";
import {IAdapterRegistry} from "../../src/IAdapterRegistry.sol";

/// @notice Registrations, signatures and share tables for the registry and splitter tests.
abstract contract Fixtures is Test {
    // anvil's first test key (public knowledge; test use only)
    uint256 internal constant PUBLISHER_KEY = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;

    /// @dev secp256k1 group order: private keys are in [1, N - 1].
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    AdapterRegistry internal registry;
    address internal publisher;

    function _deployRegistry() internal {
        registry = new AdapterRegistry();
        publisher = vm.addr(PUBLISHER_KEY);
        vm.label(address(registry), "AdapterRegistry");
        vm.label(publisher, "publisher");
    }

    /// @notice A registration of `manifestHash` by `publisher_` with the given share table.
    function _registration(
        bytes32 manifestHash,
        address publisher_,
        address[] memory contributors,
        uint16[] memory shares
    ) internal pure returns (IAdapterRegistry.Registration memory r) {
        r.manifestHash = manifestHash;
        r.adapterHash = keccak256(abi.encode("adapter", manifestHash));
        r.baseModel = "HuggingFaceTB/SmolLM2-135M-Instruct@main";
        r.datanetRoots = new bytes32[](2);
        r.datanetRoots[0] = keccak256("datanet clinical-notes");
        r.datanetRoots[1] = keccak256("datanet discharge-summaries");
        r.uri = "hf://alice/smollm2-135m-clinical-lora";
        r.publisher = publisher_;
        r.contributors = contributors;
        r.shares = shares;
    }

    /// @notice Three contributors with 50.00 %, 33.33 % and 16.67 %.
    function _threeWay() internal pure returns (address[] memory c, uint16[] memory s) {
        c = new address[](3);
        c[0] = address(0x1000);
        c[1] = address(0x2000);
        c[2] = address(0x3000);
        s = new uint16[](3);
        s[0] = 5000;
        s[1] = 3333;
        s[2] = 1667;
    }

    function _defaultRegistration(bytes32 manifestHash) internal view returns (IAdapterRegistry.Registration memory) {
        (address[] memory c, uint16[] memory s) = _threeWay();
        return _registration(manifestHash, publisher, c, s);
    }

    /// @notice `key`'s 65-byte signature (r, s, v) over `r` for `reg`'s domain.
    function _sign(AdapterRegistry reg, uint256 key, IAdapterRegistry.Registration memory r)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 rr, bytes32 ss) = vm.sign(key, reg.hashRegistration(r));
        return abi.encodePacked(rr, ss, v);
    }

    /// @notice Signs with PUBLISHER_KEY and registers; returns the manifest hash.
    function _register(IAdapterRegistry.Registration memory r) internal returns (bytes32) {
        registry.register(r, _sign(registry, PUBLISHER_KEY, r));
        return r.manifestHash;
    }

    /// @notice `n` distinct, nonzero, strictly ascending addresses drawn from `seed`, none of
    /// them a precompile or a contract of the test.
    function _contributors(uint256 n, uint256 seed) internal pure returns (address[] memory c) {
        c = new address[](n);
        uint256 a = (uint256(keccak256(abi.encode(seed))) >> 100) | (1 << 120);
        for (uint256 i; i < n; ++i) {
            c[i] = address(uint160(a));
            a += 1 + (uint256(keccak256(abi.encode(seed, i))) >> 112);
        }
    }

    /// @notice `n` nonzero basis-point shares summing to exactly 10 000, drawn from `seed`
    /// (1 <= n <= 10 000).
    function _shares(uint256 n, uint256 seed) internal pure returns (uint16[] memory s) {
        s = new uint16[](n);
        uint256[] memory w = new uint256[](n);
        uint256 totalWeight;
        for (uint256 i; i < n; ++i) {
            // Skewed weights: most small, a few large, some equal.
            w[i] = 1 + (uint256(keccak256(abi.encode(seed, "w", i))) % 4) ** 3
                * (uint256(keccak256(abi.encode(seed, i))) % 97);
            totalWeight += w[i];
        }
        uint256 spare = 10_000 - n;
        uint256 given;
        for (uint256 i; i < n; ++i) {
            uint256 extra = spare * w[i] / totalWeight;
            s[i] = uint16(1 + extra);
            given += 1 + extra;
        }
        s[n - 1] += uint16(10_000 - given);
    }

    function _sum(uint16[] memory s) internal pure returns (uint256 total) {
        for (uint256 i; i < s.length; ++i) {
            total += s[i];
        }
    }
}
