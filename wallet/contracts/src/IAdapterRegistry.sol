// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The adapter registry's interface, shared by the registry, the reward splitter and clients.
/// @notice A registration records one published adapter by the hash of its lineage manifest.
interface IAdapterRegistry {
    /// @notice Everything the publisher signs (EIP-712 typed data, primary type `Registration`).
    /// @dev `contributors` are sorted by address, strictly ascending (so: no duplicates, no zero
    /// address), and `shares[i]` is the share of `contributors[i]` in basis points; the shares are
    /// all nonzero and sum to exactly 10 000.
    struct Registration {
        bytes32 manifestHash; // hash of the canonical lineage manifest (RFC 8785 JSON)
        bytes32 adapterHash; // hash of the adapter weights file
        string baseModel; // "<hub repo>@<revision>", e.g. "HuggingFaceTB/SmolLM2-135M-Instruct@main"
        bytes32[] datanetRoots; // contributions roots of the Datanets used, in manifest order
        string uri; // where the adapter and its manifest can be fetched
        bytes32 parent; // manifestHash of the previous version, or zero
        address publisher; // who signed this registration
        address[] contributors; // ascending by address
        uint16[] shares; // basis points, parallel to contributors, sum 10 000
    }

    /// @notice One adapter was registered.
    event AdapterRegistered(
        bytes32 indexed manifestHash, address indexed publisher, bytes32 indexed parent, bytes32 adapterHash, string uri
    );

    error ZeroManifestHash();
    error ZeroAdapterHash();
    error EmptyBaseModel();
    error EmptyUri();
    error ZeroPublisher();
    error AlreadyRegistered(bytes32 manifestHash);
    error UnknownParent(bytes32 parent);
    error NoContributors();
    error TooManyContributors(uint256 count, uint256 max);
    error LengthMismatch(uint256 contributors, uint256 shares);
    error ZeroAddressContributor();
    error DuplicateContributor(address contributor);
    error ContributorsNotSorted(uint256 index);
    error ZeroShare(uint256 index);
    error SharesNotTenThousand(uint256 sum);
    error InvalidSignature();
    error NotRegistered(bytes32 manifestHash);

    /// @notice Records `r`. Anyone may submit it (a relayer, say); `signature` must be the
    /// publisher's EIP-712 signature over `r` (an EOA's 65-byte signature, or an ERC-1271
    /// contract wallet's answer).
    function register(Registration calldata r, bytes calldata signature) external;

    /// @notice Whether `manifestHash` is registered.
    function isRegistered(bytes32 manifestHash) external view returns (bool);

    /// @notice The registration as it was signed. Reverts with `NotRegistered` if unknown.
    function getRegistration(bytes32 manifestHash) external view returns (Registration memory);

    /// @notice The block number and timestamp of the registration. Reverts if unknown.
    function registeredAt(bytes32 manifestHash) external view returns (uint64 blockNumber, uint64 timestamp);

    /// @notice The contributors (ascending) and their shares in basis points. Reverts if unknown.
    function sharesOf(bytes32 manifestHash)
        external
        view
        returns (address[] memory contributors, uint16[] memory shares);

    /// @notice The EIP-712 struct hash of `r`.
    function structHash(Registration calldata r) external pure returns (bytes32);

    /// @notice The EIP-712 digest that the publisher signs for `r` on this chain and contract.
    function hashRegistration(Registration calldata r) external view returns (bytes32);

    /// @notice The EIP-712 domain separator of this chain and contract.
    function domainSeparator() external view returns (bytes32);
}
