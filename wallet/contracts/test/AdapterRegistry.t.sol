// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

import {Fixtures} from "./utils/Fixtures.sol";
import {AdapterRegistry} from "../src/AdapterRegistry.sol";
import {IAdapterRegistry} from "../src/IAdapterRegistry.sol";

/// @notice A contract wallet (ERC-1271) owned by one key.
contract OwnedWallet {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && signer == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}

contract AdapterRegistryTest is Fixtures {
    string internal constant TYPE_STRING = "Registration(bytes32 manifestHash,bytes32 adapterHash,string baseModel,"
        "bytes32[] datanetRoots,string uri,bytes32 parent,address publisher,address[] contributors,uint16[] shares)";
    string internal constant GOLDEN = "/test/golden/eip712.json";

    bytes32 internal constant M1 = keccak256("manifest v1");
    bytes32 internal constant M2 = keccak256("manifest v2");

    function setUp() public {
        _deployRegistry();
    }

    // ---------------------------------------------------------------- registration

    function test_Register_StoresTheRegistrationAndEmits() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.roll(1234);
        vm.warp(1_700_000_000);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IAdapterRegistry.AdapterRegistered(M1, publisher, bytes32(0), r.adapterHash, r.uri);
        registry.register(r, sig);

        vm.assertTrue(registry.isRegistered(M1), "registered");
        vm.assertFalse(registry.isRegistered(M2), "other manifest not registered");
        IAdapterRegistry.Registration memory got = registry.getRegistration(M1);
        vm.assertEq(got.manifestHash, r.manifestHash, "manifestHash");
        vm.assertEq(got.adapterHash, r.adapterHash, "adapterHash");
        vm.assertEq(got.baseModel, r.baseModel, "baseModel");
        vm.assertEq(got.datanetRoots, r.datanetRoots, "datanetRoots");
        vm.assertEq(got.uri, r.uri, "uri");
        vm.assertEq(got.parent, r.parent, "parent");
        vm.assertEq(got.publisher, r.publisher, "publisher");
        vm.assertEq(got.contributors, r.contributors, "contributors");
        vm.assertEq(_u(got.shares), _u(r.shares), "shares");
        // What was stored hashes to what was signed.
        vm.assertEq(registry.hashRegistration(got), registry.hashRegistration(r), "stored record hashes as signed");

        (address[] memory c, uint16[] memory s) = registry.sharesOf(M1);
        vm.assertEq(c, r.contributors, "sharesOf contributors");
        vm.assertEq(_u(s), _u(r.shares), "sharesOf shares");
        (uint64 blockNumber, uint64 timestamp) = registry.registeredAt(M1);
        vm.assertEq(blockNumber, 1234, "block number");
        vm.assertEq(timestamp, 1_700_000_000, "timestamp");
    }

    function test_Register_ByARelayer() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.prank(makeAddr("relayer"));
        registry.register(r, sig);
        vm.assertEq(registry.getRegistration(M1).publisher, publisher, "the signer is the publisher, not the sender");
    }

    function testFuzz_Register_AnyPublisherKey(uint256 key, bytes32 manifestHash) public {
        key = bound(key, 1, SECP256K1_N - 1);
        vm.assume(manifestHash != bytes32(0));
        (address[] memory c, uint16[] memory s) = _threeWay();
        IAdapterRegistry.Registration memory r = _registration(manifestHash, vm.addr(key), c, s);
        registry.register(r, _sign(registry, key, r));
        vm.assertEq(registry.getRegistration(manifestHash).publisher, vm.addr(key), "publisher");
    }

    function test_Register_ContractWalletPublisher() public {
        OwnedWallet wallet = new OwnedWallet(publisher);
        (address[] memory c, uint16[] memory s) = _threeWay();
        IAdapterRegistry.Registration memory r = _registration(M1, address(wallet), c, s);
        registry.register(r, _sign(registry, PUBLISHER_KEY, r));
        vm.assertEq(registry.getRegistration(M1).publisher, address(wallet), "ERC-1271 publisher");

        IAdapterRegistry.Registration memory r2 = _registration(M2, address(wallet), c, s);
        bytes memory notTheOwners = _sign(registry, PUBLISHER_KEY + 1, r2);
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r2, notTheOwners);
    }

    function test_Register_ParentVersion() public {
        _register(_defaultRegistration(M1));
        IAdapterRegistry.Registration memory r2 = _defaultRegistration(M2);
        r2.parent = M1;
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r2);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IAdapterRegistry.AdapterRegistered(M2, publisher, M1, r2.adapterHash, r2.uri);
        registry.register(r2, sig);
        vm.assertEq(registry.getRegistration(M2).parent, M1, "parent");
    }

    function test_Register_MaxContributorsWithinGas() public {
        uint256 n = registry.MAX_CONTRIBUTORS();
        IAdapterRegistry.Registration memory r = _registration(M1, publisher, _contributors(n, 7), _shares(n, 7));
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        uint256 before = gasleft();
        registry.register(r, sig);
        uint256 used = before - gasleft();
        vm.assertLt(used, 15_000_000, "registering the most contributors fits in half a 30M block");
        (address[] memory c,) = registry.sharesOf(M1);
        vm.assertEq(c.length, n, "all stored");
    }

    // ---------------------------------------------------------------- refusals

    function test_RevertWhen_AlreadyRegistered() public {
        _register(_defaultRegistration(M1));
        IAdapterRegistry.Registration memory again = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, again);
        vm.expectRevert(abi.encodeWithSelector(IAdapterRegistry.AlreadyRegistered.selector, M1));
        registry.register(again, sig);

        // Not with other content or another publisher either: one registration per manifest.
        uint256 otherKey = 0xB0B;
        (address[] memory c, uint16[] memory s) = _threeWay();
        IAdapterRegistry.Registration memory other = _registration(M1, vm.addr(otherKey), c, s);
        other.uri = "hf://mallory/copy";
        sig = _sign(registry, otherKey, other);
        vm.expectRevert(abi.encodeWithSelector(IAdapterRegistry.AlreadyRegistered.selector, M1));
        registry.register(other, sig);
    }

    function testFuzz_RevertWhen_WrongSigner(uint256 signerKey, uint256 publisherKey) public {
        signerKey = bound(signerKey, 1, SECP256K1_N - 1);
        publisherKey = bound(publisherKey, 1, SECP256K1_N - 1);
        vm.assume(vm.addr(signerKey) != vm.addr(publisherKey));
        (address[] memory c, uint16[] memory s) = _threeWay();
        IAdapterRegistry.Registration memory r = _registration(M1, vm.addr(publisherKey), c, s);
        bytes memory sig = _sign(registry, signerKey, r);
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
        vm.assertFalse(registry.isRegistered(M1), "nothing recorded");
    }

    function test_RevertWhen_SignedFieldsChanged() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        // A relayer that moves a share from one contributor to another is refused.
        r.shares[0] -= 1;
        r.shares[1] += 1;
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
        r.shares[0] += 1;
        r.shares[1] -= 1;
        r.uri = "hf://mallory/elsewhere";
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
    }

    function test_RevertWhen_SignatureMalformed() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, "");
        bytes memory short = new bytes(64);
        for (uint256 i; i < 64; ++i) {
            short[i] = sig[i];
        }
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, short);
        sig[64] = bytes1(uint8(29)); // v must be 27 or 28
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
    }

    function test_RevertWhen_SignedForAnotherChain() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.chainId(block.chainid + 1);
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
    }

    function test_RevertWhen_SignedForAnotherRegistry() public {
        AdapterRegistry other = new AdapterRegistry();
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        bytes memory sig = _sign(other, PUBLISHER_KEY, r);
        vm.expectRevert(IAdapterRegistry.InvalidSignature.selector);
        registry.register(r, sig);
    }

    function test_RevertWhen_UnknownParent() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M2);
        r.parent = M1;
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IAdapterRegistry.UnknownParent.selector, M1));
        registry.register(r, sig);
    }

    function testFuzz_Register_SharesSummingToTenThousand(uint256 n, uint256 seed) public {
        n = bound(n, 1, 40);
        uint16[] memory s = _shares(n, seed);
        vm.assertEq(_sum(s), 10_000, "fixture sums to 10 000");
        IAdapterRegistry.Registration memory r = _registration(M1, publisher, _contributors(n, seed), s);
        _register(r);
        (, uint16[] memory stored) = registry.sharesOf(M1);
        vm.assertEq(_u(stored), _u(s), "shares stored as signed");
    }

    function testFuzz_RevertWhen_SharesNotTenThousand(uint256 n, uint256 seed, uint256 delta, bool up) public {
        n = bound(n, 1, 40);
        uint16[] memory s = _shares(n, seed);
        uint256 i = seed % n;
        if (up) {
            delta = bound(delta, 1, type(uint16).max - s[i]);
            s[i] += uint16(delta);
        } else {
            vm.assume(s[i] > 1);
            delta = bound(delta, 1, s[i] - 1);
            s[i] -= uint16(delta);
        }
        uint256 sum = _sum(s);
        IAdapterRegistry.Registration memory r = _registration(M1, publisher, _contributors(n, seed), s);
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.expectRevert(abi.encodeWithSelector(IAdapterRegistry.SharesNotTenThousand.selector, sum));
        registry.register(r, sig);
    }

    function test_RevertWhen_DuplicateContributor() public {
        (address[] memory c, uint16[] memory s) = _threeWay();
        c[2] = c[1];
        _expectRefused(c, s, abi.encodeWithSelector(IAdapterRegistry.DuplicateContributor.selector, c[1]));
    }

    function testFuzz_RevertWhen_DuplicateContributor(uint256 n, uint256 seed, uint256 at) public {
        n = bound(n, 2, 40);
        at = bound(at, 1, n - 1);
        address[] memory c = _contributors(n, seed);
        c[at] = c[at - 1];
        _expectRefused(
            c, _shares(n, seed), abi.encodeWithSelector(IAdapterRegistry.DuplicateContributor.selector, c[at])
        );
    }

    function test_RevertWhen_ContributorsNotSorted() public {
        (address[] memory c, uint16[] memory s) = _threeWay();
        (c[0], c[2]) = (c[2], c[0]);
        _expectRefused(c, s, abi.encodeWithSelector(IAdapterRegistry.ContributorsNotSorted.selector, 1));
    }

    function test_RevertWhen_ZeroAddressContributor() public {
        (address[] memory c, uint16[] memory s) = _threeWay();
        c[0] = address(0);
        _expectRefused(c, s, abi.encodeWithSelector(IAdapterRegistry.ZeroAddressContributor.selector));
    }

    function test_RevertWhen_ZeroShare() public {
        address[] memory c = _contributors(3, 1);
        uint16[] memory s = new uint16[](3);
        s[0] = 5000;
        s[2] = 5000;
        _expectRefused(c, s, abi.encodeWithSelector(IAdapterRegistry.ZeroShare.selector, 1));
    }

    function test_RevertWhen_NoContributors() public {
        _expectRefused(
            new address[](0), new uint16[](0), abi.encodeWithSelector(IAdapterRegistry.NoContributors.selector)
        );
    }

    function test_RevertWhen_LengthMismatch() public {
        (address[] memory c,) = _threeWay();
        uint16[] memory s = new uint16[](2);
        s[0] = 5000;
        s[1] = 5000;
        _expectRefused(c, s, abi.encodeWithSelector(IAdapterRegistry.LengthMismatch.selector, 3, 2));
    }

    function test_RevertWhen_TooManyContributors() public {
        uint256 n = registry.MAX_CONTRIBUTORS() + 1;
        _expectRefused(
            _contributors(n, 3),
            _shares(n, 3),
            abi.encodeWithSelector(IAdapterRegistry.TooManyContributors.selector, n, n - 1)
        );
    }

    function test_RevertWhen_MissingFields() public {
        IAdapterRegistry.Registration memory r = _defaultRegistration(bytes32(0));
        _expectRefused(r, abi.encodeWithSelector(IAdapterRegistry.ZeroManifestHash.selector));
        r = _defaultRegistration(M1);
        r.adapterHash = bytes32(0);
        _expectRefused(r, abi.encodeWithSelector(IAdapterRegistry.ZeroAdapterHash.selector));
        r = _defaultRegistration(M1);
        r.baseModel = "";
        _expectRefused(r, abi.encodeWithSelector(IAdapterRegistry.EmptyBaseModel.selector));
        r = _defaultRegistration(M1);
        r.uri = "";
        _expectRefused(r, abi.encodeWithSelector(IAdapterRegistry.EmptyUri.selector));
        r = _defaultRegistration(M1);
        r.publisher = address(0);
        vm.expectRevert(IAdapterRegistry.ZeroPublisher.selector);
        registry.register(r, new bytes(65));
    }

    function test_RevertWhen_ReadingAnUnknownAdapter() public {
        bytes memory err = abi.encodeWithSelector(IAdapterRegistry.NotRegistered.selector, M1);
        vm.expectRevert(err);
        registry.getRegistration(M1);
        vm.expectRevert(err);
        registry.sharesOf(M1);
        vm.expectRevert(err);
        registry.registeredAt(M1);
    }

    // ---------------------------------------------------------------- EIP-712

    function test_Digest_MatchesIndependentComputation() public view {
        IAdapterRegistry.Registration memory r = _defaultRegistration(M1);
        r.parent = M2;
        _checkDigest(r);
    }

    function testFuzz_Digest_MatchesIndependentComputation(
        bytes32 manifestHash,
        bytes32 adapterHash,
        bytes32 parent,
        uint256 key,
        uint256 n,
        uint256 seed,
        uint64 chainId
    ) public {
        key = bound(key, 1, SECP256K1_N - 1);
        n = bound(n, 1, 12);
        vm.chainId(bound(chainId, 1, type(uint64).max));
        IAdapterRegistry.Registration memory r =
            _registration(manifestHash, vm.addr(key), _contributors(n, seed), _shares(n, seed));
        r.adapterHash = adapterHash;
        r.parent = parent;
        r.datanetRoots = new bytes32[](seed % 4);
        for (uint256 i; i < r.datanetRoots.length; ++i) {
            r.datanetRoots[i] = keccak256(abi.encode(seed, "root", i));
        }
        _checkDigest(r);

        // and the publisher's signature over it recovers to the publisher
        (uint8 v, bytes32 rr, bytes32 ss) = vm.sign(key, registry.hashRegistration(r));
        vm.assertEq(ECDSA.recover(registry.hashRegistration(r), v, rr, ss), r.publisher, "recovered signer");
    }

    function test_TypeHash() public view {
        vm.assertEq(registry.REGISTRATION_TYPEHASH(), keccak256(bytes(TYPE_STRING)), "typehash of the type string");
        vm.assertEq(registry.REGISTRATION_TYPEHASH(), vm.eip712HashType(TYPE_STRING), "forge's typehash");
    }

    /// The golden file is a plain eth_signTypedData_v4 document plus the expected hashes and a
    /// signature; the Rust client checks itself against the same file.
    function test_Golden_Eip712() public {
        string memory json = vm.readFile(string.concat(vm.projectRoot(), GOLDEN));
        IAdapterRegistry.Registration memory r = _goldenRegistration(json);
        bytes32 digest = vm.parseJsonBytes32(json, ".digest");

        // forge's own EIP-712 implementation (alloy, as the Rust client uses) over the document
        vm.assertEq(vm.eip712HashTypedData(json), digest, "alloy's digest of the golden typed data");

        // the registry at the golden chain id and address
        vm.chainId(vm.parseJsonUint(json, ".domain.chainId"));
        address at = vm.parseJsonAddress(json, ".domain.verifyingContract");
        vm.etch(at, address(registry).code);
        AdapterRegistry golden = AdapterRegistry(at);
        vm.assertEq(vm.parseJsonString(json, ".typeString"), golden.REGISTRATION_TYPE(), "type string");
        vm.assertEq(vm.parseJsonBytes32(json, ".typeHash"), golden.REGISTRATION_TYPEHASH(), "type hash");
        vm.assertEq(vm.parseJsonBytes32(json, ".domainSeparator"), golden.domainSeparator(), "domain separator");
        vm.assertEq(
            vm.parseJsonBytes32(json, ".domainSeparator"),
            _independentDomainSeparator(at, block.chainid),
            "independent domain separator"
        );
        vm.assertEq(vm.parseJsonBytes32(json, ".structHash"), golden.structHash(r), "struct hash");
        vm.assertEq(vm.parseJsonBytes32(json, ".structHash"), _independentStructHash(r), "independent struct hash");
        vm.assertEq(golden.hashRegistration(r), digest, "registry digest");

        // the signature: deterministic (RFC 6979), by the publisher's key, accepted by the registry
        uint256 key = vm.parseJsonUint(json, ".publisherPrivateKey");
        vm.assertEq(vm.addr(key), r.publisher, "key belongs to the publisher");
        (uint8 v, bytes32 rr, bytes32 ss) = vm.sign(key, digest);
        bytes memory sig = vm.parseJsonBytes(json, ".signature");
        vm.assertEq(sig, abi.encodePacked(rr, ss, v), "signature");
        vm.assertEq(ECDSA.recover(digest, sig), r.publisher, "recovered signer");
        golden.register(r, sig);
        vm.assertTrue(golden.isRegistered(r.manifestHash), "golden registration accepted");
    }

    // ---------------------------------------------------------------- helpers

    function _expectRefused(address[] memory c, uint16[] memory s, bytes memory err) internal {
        _expectRefused(_registration(M1, publisher, c, s), err);
    }

    function _expectRefused(IAdapterRegistry.Registration memory r, bytes memory err) internal {
        bytes memory sig = _sign(registry, PUBLISHER_KEY, r);
        vm.expectRevert(err);
        registry.register(r, sig);
    }

    function _checkDigest(IAdapterRegistry.Registration memory r) internal view {
        bytes32 sh = _independentStructHash(r);
        vm.assertEq(registry.structHash(r), sh, "struct hash");
        bytes32 ds = _independentDomainSeparator(address(registry), block.chainid);
        vm.assertEq(registry.domainSeparator(), ds, "domain separator");
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", ds, sh));
        vm.assertEq(registry.hashRegistration(r), digest, "digest");
        vm.assertEq(
            vm.eip712HashTypedData(_typedDataJson(r, block.chainid, address(registry))), digest, "alloy's digest"
        );
    }

    /// encodeData written out by hand, element by element.
    function _independentStructHash(IAdapterRegistry.Registration memory r) internal pure returns (bytes32) {
        bytes memory roots;
        for (uint256 i; i < r.datanetRoots.length; ++i) {
            roots = bytes.concat(roots, r.datanetRoots[i]);
        }
        bytes memory contributors;
        for (uint256 i; i < r.contributors.length; ++i) {
            contributors = bytes.concat(contributors, bytes32(uint256(uint160(r.contributors[i]))));
        }
        bytes memory shares;
        for (uint256 i; i < r.shares.length; ++i) {
            shares = bytes.concat(shares, bytes32(uint256(r.shares[i])));
        }
        return keccak256(
            bytes.concat(
                keccak256(bytes(TYPE_STRING)),
                r.manifestHash,
                r.adapterHash,
                keccak256(bytes(r.baseModel)),
                keccak256(roots),
                keccak256(bytes(r.uri)),
                r.parent,
                bytes32(uint256(uint160(r.publisher))),
                keccak256(contributors),
                keccak256(shares)
            )
        );
    }

    function _independentDomainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("ModelFactory AdapterRegistry"),
                keccak256("1"),
                chainId,
                verifyingContract
            )
        );
    }

    /// The same registration as eth_signTypedData_v4 JSON (strings here need no escaping).
    function _typedDataJson(IAdapterRegistry.Registration memory r, uint256 chainId, address verifyingContract)
        internal
        pure
        returns (string memory)
    {
        string memory types = string.concat(
            '{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},',
            '{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],',
            '"Registration":[{"name":"manifestHash","type":"bytes32"},{"name":"adapterHash","type":"bytes32"},',
            '{"name":"baseModel","type":"string"},{"name":"datanetRoots","type":"bytes32[]"},',
            '{"name":"uri","type":"string"},{"name":"parent","type":"bytes32"},{"name":"publisher","type":"address"},',
            '{"name":"contributors","type":"address[]"},{"name":"shares","type":"uint16[]"}]}'
        );
        string memory domain = string.concat(
            '{"name":"ModelFactory AdapterRegistry","version":"1","chainId":',
            vm.toString(chainId),
            ',"verifyingContract":"',
            vm.toString(verifyingContract),
            '"}'
        );
        string memory roots;
        for (uint256 i; i < r.datanetRoots.length; ++i) {
            roots = string.concat(roots, i == 0 ? '"' : ',"', vm.toString(r.datanetRoots[i]), '"');
        }
        string memory contributors;
        string memory shares;
        for (uint256 i; i < r.contributors.length; ++i) {
            contributors = string.concat(contributors, i == 0 ? '"' : ',"', vm.toString(r.contributors[i]), '"');
            shares = string.concat(shares, i == 0 ? "" : ",", vm.toString(uint256(r.shares[i])));
        }
        string memory message = string.concat(
            '{"manifestHash":"',
            vm.toString(r.manifestHash),
            '","adapterHash":"',
            vm.toString(r.adapterHash),
            '","baseModel":"',
            r.baseModel,
            '","datanetRoots":[',
            roots,
            '],"uri":"',
            r.uri
        );
        message = string.concat(
            message,
            '","parent":"',
            vm.toString(r.parent),
            '","publisher":"',
            vm.toString(r.publisher),
            '","contributors":[',
            contributors,
            '],"shares":[',
            shares,
            "]}"
        );
        return string.concat(
            '{"types":', types, ',"primaryType":"Registration","domain":', domain, ',"message":', message, "}"
        );
    }

    function _goldenRegistration(string memory json) internal pure returns (IAdapterRegistry.Registration memory r) {
        r.manifestHash = vm.parseJsonBytes32(json, ".message.manifestHash");
        r.adapterHash = vm.parseJsonBytes32(json, ".message.adapterHash");
        r.baseModel = vm.parseJsonString(json, ".message.baseModel");
        r.datanetRoots = vm.parseJsonBytes32Array(json, ".message.datanetRoots");
        r.uri = vm.parseJsonString(json, ".message.uri");
        r.parent = vm.parseJsonBytes32(json, ".message.parent");
        r.publisher = vm.parseJsonAddress(json, ".message.publisher");
        r.contributors = vm.parseJsonAddressArray(json, ".message.contributors");
        uint256[] memory s = vm.parseJsonUintArray(json, ".message.shares");
        r.shares = new uint16[](s.length);
        for (uint256 i; i < s.length; ++i) {
            r.shares[i] = uint16(s[i]);
        }
    }

    function _u(uint16[] memory s) internal pure returns (uint256[] memory u) {
        u = new uint256[](s.length);
        for (uint256 i; i < s.length; ++i) {
            u[i] = s[i];
        }
    }
}
